"""Commands that talk to the cloud run against the real cloud service: reuse the cloud's fixtures."""

from tests.cloud.conftest import cloud_factory, cloud_pki

__all__ = ["cloud_factory", "cloud_pki"]
