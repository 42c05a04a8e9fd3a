"""The public progress page: how fast the city acts on its cases, for everyone, without sign-in.

``/public`` (a static page shipped in ``static/``: no build step, nothing from another host)
and its figures at ``/public/v1/progress``, per service and district, from the service
layer's store (``[cloud.progress]``; docs/PROGRESS.md):

* :mod:`~citygate.progress.settings`: ``ProgressSettings``, refused without the service layer;
* :mod:`~citygate.progress.weeks`: the weeks shown, in the city's time zone;
* :mod:`~citygate.progress.stats`: the six aggregate queries of a refresh (raw figures);
* :mod:`~citygate.progress.privacy`: which counts are hidden as "< k" (small ones, and the ones
  that would give a small one away);
* :mod:`~citygate.progress.publish`: raw figures to the published JSON (:mod:`~citygate.progress.model`);
* :mod:`~citygate.progress.board`: the refresh cache, the rate limit, the page's own engine;
* :mod:`~citygate.progress.api`: the router.
"""
