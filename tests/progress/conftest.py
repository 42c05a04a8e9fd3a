"""The progress page's tests: the service store on both databases, and the real cloud."""

from tests.cloud.conftest import cloud_factory, cloud_pki
from tests.service.conftest import engine, store_url

__all__ = ["cloud_factory", "cloud_pki", "engine", "store_url"]
