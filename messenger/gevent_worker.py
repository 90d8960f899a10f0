"""gunicorn's gevent worker, accepting new connections in batches and writing each answer
in one piece (messenger.one_write_response).

With more than one worker, gunicorn makes each accept one connection per turn of its event
loop, so that one worker does not take every waiting connection. Under load a turn runs
every ready request a little (tens of milliseconds for 64 requests), so a busy worker
accepted about 20 connections a second: when 256 clients connected at once, the last ones
waited up to 9 s in the listen queue before any request of theirs was read (`ss` showed the
queue; the requests themselves took at most 1.2 s). Here each turn accepts up to gevent's
own batch (`StreamServer.max_accept`, 100). Both workers are woken for the same listen
queue, so they still share a burst, and the admission queue (ConcurrencyLimitMiddleware)
bounds what an accepted connection can make a worker do at once."""

from gevent.server import StreamServer
from gunicorn.workers import ggevent

from messenger import one_write_response


class BatchAcceptServer(StreamServer):
    """A StreamServer whose batch gunicorn's `max_accept = 1` does not lower."""

    @property
    def max_accept(self) -> int:
        return StreamServer.max_accept

    @max_accept.setter
    def max_accept(self, value: int) -> None:
        pass  # gunicorn's 1 for several workers: see the module's docstring


class GeventWorker(ggevent.GeventWorker):
    def run(self) -> None:
        # gunicorn builds its servers inside run() from this module-level name; swapping it
        # in the worker process alone avoids copying run().
        ggevent.StreamServer = BatchAcceptServer
        one_write_response.install()
        super().run()
