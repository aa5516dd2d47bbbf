"""One client connection through the gateway: parse its requests, forward each to a backend,
stream the response back, and answer errors as JSON.

Failures are sorted by what the client has seen: before any response byte went out, the
client gets a JSON error (502/504) and may keep its connection; after that, the only honest
signal left is closing the connection.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import httptools

from . import routing as rt
from .upstream import UpstreamConn

if TYPE_CHECKING:
    from .proxy import Gateway

READ = 1 << 16
HIGH_WATER = 1 << 18
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_SOURCES = {"host": "Host header", "header": "dockyard-space header", "baggage": "baggage header"}


class _ClientGone(Exception):
    """The client closed, stalled past idle_timeout or sent garbage mid-request."""


class _NoResponse(Exception):
    """The backend closed or reset before sending any response byte."""


class _BadResponse(Exception):
    """The backend's response could not be parsed or broke off."""


class _HeadDone(Exception):
    """Stops the response parser after the head of a response that has no body."""


class _Req:
    __slots__ = ("method", "url", "headers", "host", "http11", "keep_alive", "upgrade", "complete",
                 "body", "length", "chunked", "expect", "t0", "space", "baggage", "requested")

    def __init__(self) -> None:
        self.url: list[bytes] = []
        self.headers: rt.Headers = []
        self.host: bytes | None = None
        self.body: list[bytes] = []
        self.complete = False
        self.length = self.chunked = self.expect = self.upgrade = False
        self.method = ""
        self.http11 = self.keep_alive = True
        self.t0 = 0.0
        self.space: bytes | None = None  # the first dockyard-space header
        self.baggage: list[bytes] | None = None  # the baggage headers, when any
        self.requested: str | None = None  # the space the request asked for (host, header or baggage)


class _Resp:
    """httptools callbacks for one backend response; output for the client piles up in `out`
    and goes out in one write per read."""

    __slots__ = ("method", "http11", "keep_alive", "parser", "reason", "headers", "status", "out",
                 "head_done", "done", "framing", "until_eof", "reusable", "upgraded")

    def __init__(self, method: str, http11: bool, keep_alive: bool) -> None:
        self.method, self.http11, self.keep_alive = method, http11, keep_alive
        self.parser: Any = None
        self.reason = b""
        self.headers: rt.Headers = []
        self.status = 0
        self.out: list[bytes] = []
        self.head_done = self.done = self.until_eof = self.reusable = self.upgraded = False
        self.framing = "none"

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        p = self.parser
        status = self.status = p.get_status_code()
        if 100 <= status < 200 and status != 101:  # interim (100 Continue, 103): pass on, read on
            self.out.append(rt.interim_head(status, self.reason, self.headers))
            self.reason, self.headers = b"", []
            return
        if status == 101:
            self.upgraded = self.head_done = True
            self.out.append(rt.upgrade_response_head(status, self.reason, self.headers))
            return
        length = chunked = False
        for n, v in self.headers:
            ln = n.lower()
            if ln == b"content-length":
                length = True
            elif ln == b"transfer-encoding" and b"chunked" in v.lower():
                chunked = True
        length = length and not chunked
        self.framing, self.keep_alive = rt.response_framing(self.method, status, length, self.http11, self.keep_alive)
        self.until_eof = self.framing != "none" and not length and not chunked
        self.reusable = p.should_keep_alive() and not self.until_eof
        self.out.append(rt.response_head(status, self.reason, self.headers, self.framing, self.keep_alive, self.http11))
        self.head_done = True
        if self.method == "HEAD":  # llhttp cannot be told the request was HEAD: stop it here
            self.done = True
            raise _HeadDone

    def on_body(self, body: bytes) -> None:
        self.out.append(rt.chunk(body) if self.framing == "chunked" else body)

    def on_message_complete(self) -> None:
        if not self.head_done:  # the end of an interim response
            return
        if self.framing == "chunked":
            self.out.append(rt.LAST_CHUNK)
        self.done = True


class Session:
    def __init__(self, gw: "Gateway", reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.gw = gw
        self.reader, self.writer = reader, writer
        peer = writer.get_extra_info("peername")
        self.client_ip = str(peer[0]) if peer else "unknown"
        self.parser = httptools.HttpRequestParser(self)
        self.pending: deque[_Req] = deque()
        self.cur = _Req()
        self.bad = False
        self.upgrade_tail: bytes | None = None
        self.abort = False
        self.loop = asyncio.get_running_loop()
        self.idle_since = 0.0  # loop time since which we wait for the client, 0 when not waiting
        # likewise for the backend: the sweeper closes `upstream` past response_timeout
        self.upstream_since = 0.0
        self.upstream: UpstreamConn | None = None
        self.timed_out = False

    # ---- request parser callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.cur = _Req()

    def on_url(self, url: bytes) -> None:
        self.cur.url.append(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        r = self.cur
        r.headers.append((name, value))
        if len(name) in (4, 6, 7, 14, 17):
            ln = name.lower()
            if ln == b"host":
                r.host = value
            elif ln == b"content-length":
                r.length = True
            elif ln == b"dockyard-space":
                if r.space is None:
                    r.space = value
            elif ln == b"baggage":
                if r.baggage is None:
                    r.baggage = [value]
                else:
                    r.baggage.append(value)
            elif ln == b"transfer-encoding":
                r.chunked = b"chunked" in value.lower()
            elif ln == b"expect":
                r.expect = value.strip().lower() == b"100-continue"

    def on_headers_complete(self) -> None:
        r, p = self.cur, self.parser
        r.method = p.get_method().decode("ascii", "replace")
        r.http11 = p.get_http_version() == "1.1"
        r.keep_alive = p.should_keep_alive()
        r.upgrade = p.should_upgrade()
        r.t0 = time.perf_counter()
        self.pending.append(r)

    def on_body(self, body: bytes) -> None:
        self.cur.body.append(body)

    def on_message_complete(self) -> None:
        self.cur.complete = True

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            self.upgrade_tail = data[e.args[0]:]
            self.cur.complete = True
        except httptools.HttpParserError:
            self.bad = True

    # ---- the connection ----------------------------------------------------------------------

    async def run(self) -> None:
        try:
            while True:
                req = await self._next()
                if req is None:
                    return
                if not await self._serve(req) or self.upgrade_tail is not None:
                    return
        except (_ClientGone, ConnectionError):
            self.abort = True

    async def _read_client(self) -> bytes:
        # the gateway's sweeper aborts connections waiting here past idle_timeout: one stamp per
        # read is cheaper than a timer per read
        self.idle_since = self.loop.time()
        try:
            return await self.reader.read(READ)
        finally:
            self.idle_since = 0.0

    async def _next(self) -> _Req | None:
        while not self.pending:
            if self.bad:
                self.writer.write(rt.error_response(400, "bad_request", "malformed HTTP request", keep_alive=False))
                self.gw.metrics.done("", "", 400, 0.0)
                return None
            if self.upgrade_tail is not None:
                return None
            try:
                data = await self._read_client()
            except (TimeoutError, ConnectionError):
                return None
            if not data:
                return None
            self._feed(data)
        return self.pending.popleft()

    async def _drain(self, writer: asyncio.StreamWriter, timeout: float) -> None:
        if writer.transport.get_write_buffer_size() > HIGH_WATER:
            async with asyncio.timeout(timeout):
                await writer.drain()

    def _done(self, req: _Req, route: rt.Route | None, status: int) -> None:
        """Count the answered request (metrics), and log it when the access log is on."""
        seconds = time.perf_counter() - req.t0
        service, namespace = (route.service, route.namespace) if route is not None else ("", "")
        self.gw.metrics.done(service, namespace, status, seconds)
        if self.gw.access_log is not None:
            host = req.host.decode("latin-1", "replace") if req.host else "-"
            path = b"".join(req.url).decode("latin-1", "replace")[:200]
            space = req.requested or "-"
            self.gw.access_log.info("%s %s %s %s %d %.1fms %s %s space=%s", self.client_ip, req.method, host, path,
                                    status, seconds * 1000, namespace or "-", service or "-", space)

    def _error(self, req: _Req, route: rt.Route | None, status: int, code: str, message: str) -> bool:
        keep = req.keep_alive and req.complete and self.upgrade_tail is None
        self.writer.write(rt.error_response(status, code, message, keep_alive=keep, head=req.method == "HEAD"))
        self._done(req, route, status)
        return keep

    async def _serve(self, req: _Req) -> bool:
        """Answer one request; whether the client connection stays open."""
        target = b"".join(req.url)
        url_host, path = rt.split_target(target.decode("latin-1"))
        host = url_host if url_host is not None else (req.host.decode("latin-1") if req.host else None)
        if req.method == "CONNECT":
            return self._error(req, None, 405, "method_not_allowed", "CONNECT is not supported")
        table = self.gw.routes  # one table for the whole decision, whatever update() does meanwhile
        route, space, bare, source = rt.route_request(table, host, path, req.space, req.baggage)
        req.requested = space
        if route is None:
            if space is None:
                return self._error(req, None, 404, "no_route", f"no route for host {host or ''!r} and path {path!r}")
            chain = table.chains.get(space)
            if chain is None:
                return self._error(req, None, 404, "no_space",
                                   f"no space {space[:80]!r} (requested by the {_SOURCES[source]})")
            return self._error(req, None, 404, "no_route",
                               f"no route for host {bare!r} and path {path!r} in space {space!r} "
                               f"(looked in {', '.join(map(repr, chain))})")
        if not route.endpoints:
            return self._error(req, route, 503, "no_ready_instance",
                               f"service {route.service!r} (namespace {route.namespace!r}) has no ready instance")
        metrics = self.gw.metrics
        metrics.enter(route.service, route.namespace)
        try:
            return await self._forward(req, route, path.encode("latin-1") if url_host is not None else target, space)
        finally:
            metrics.leave(route.service, route.namespace)

    async def _forward(self, req: _Req, route: rt.Route, target: bytes, space: str | None) -> bool:
        gw = self.gw
        tried: set[str] = set()
        while True:
            gw.turn += 1
            ep = rt.choose(route.endpoints, gw.outstanding, tried, gw.turn)
            if ep is None:
                return self._error(req, route, 502, "bad_gateway",
                                   f"no instance of service {route.service!r} answered (tried {len(tried)})")
            tried.add(ep.instance_id)
            iid = ep.instance_id
            gw.outstanding[iid] = gw.outstanding.get(iid, 0) + 1
            try:
                result = await self._attempt(req, route, ep, target, space)
            finally:
                n = gw.outstanding[iid] - 1
                if n:
                    gw.outstanding[iid] = n
                else:
                    del gw.outstanding[iid]
            if result is not None:
                return result
            # None: could not connect and the request may go elsewhere

    async def _attempt(self, req: _Req, route: rt.Route, ep: rt.Endpoint, target: bytes,
                       space: str | None) -> bool | None:
        fresh = False
        while True:
            try:
                conn, reused = await self.gw.pool.acquire(ep.address, ep.port, fresh=fresh)
            except (OSError, TimeoutError):
                if rt.retryable(req.method, False):
                    return None
                return self._error(req, route, 502, "bad_gateway",
                                   f"cannot connect to an instance of service {route.service!r}")
            try:
                return await self._exchange(req, route, conn, target, space)
            except _NoResponse:
                conn.close()
                if rt.retryable(req.method, req.length or req.chunked):
                    # a pooled connection the backend had closed meanwhile: once more on a fresh one
                    if reused and not fresh:
                        fresh = True
                        continue
                    # the instance closed a fresh connection without a byte (it is being stopped
                    # or restarted): nothing was answered, so another instance may be asked
                    return None
                return self._error(req, route, 502, "bad_gateway",
                                   f"instance of service {route.service!r} closed the connection without responding")
            except BaseException:
                conn.close()
                raise

    async def _exchange(self, req: _Req, route: rt.Route, conn: UpstreamConn, target: bytes,
                        space: str | None) -> bool:
        gw = self.gw
        uw = conn.writer
        body = "chunked" if req.chunked else "length" if req.length else "none"
        upgrade = rt.header(req.headers, b"upgrade") if req.upgrade else None
        uw.write(rt.upstream_request_head(req.method, target, req.headers, self.client_ip, body=body, upgrade=upgrade,
                                          space=space))
        if body != "none":
            if req.expect and not req.complete:
                self.writer.write(CONTINUE)
            try:
                await self._send_body(req, uw, body == "chunked")
            except (ConnectionError, TimeoutError):  # the backend stopped taking the body
                conn.close()
                return self._error(req, route, 502, "bad_gateway",
                                   f"instance of service {route.service!r} did not accept the request body")
        resp = _Resp(req.method, req.http11, req.keep_alive and self.upgrade_tail is None)
        parser = resp.parser = httptools.HttpResponseParser(resp)
        cw = self.writer
        sent = False
        self.upstream, self.timed_out = conn, False
        try:
            while not resp.done:
                self.upstream_since = self.loop.time()
                try:
                    data = await conn.reader.read(READ)
                except ConnectionError:
                    data = b""
                finally:
                    self.upstream_since = 0.0
                if self.timed_out:
                    raise TimeoutError
                if not data:
                    if resp.head_done and resp.until_eof:
                        resp.on_message_complete()
                        resp.reusable = False
                    elif not sent and not resp.out:
                        raise _NoResponse
                    else:
                        raise _BadResponse
                else:
                    try:
                        parser.feed_data(data)
                    except httptools.HttpParserUpgrade as e:
                        if resp.upgraded:
                            resp.out.append(data[e.args[0]:])
                            cw.writelines(resp.out)
                            self._done(req, route, 101)
                            break
                        raise _BadResponse
                    except httptools.HttpParserCallbackError:
                        if not resp.done:
                            raise _BadResponse
                    except httptools.HttpParserError:
                        raise _BadResponse
                if resp.out:
                    cw.writelines(resp.out)
                    resp.out.clear()
                    sent = True
                    await self._drain(cw, gw.idle_timeout)
        except TimeoutError:
            conn.close()
            if sent:  # the head is out: cutting the connection is all that is left to say
                self.abort = True
                self._done(req, route, resp.status or 504)
                return False
            return self._error(req, route, 504, "gateway_timeout",
                               f"instance of service {route.service!r} did not respond within {gw.response_timeout:g}s")
        except _BadResponse:
            conn.close()
            if sent or resp.out and resp.head_done:
                self.abort = True
                self._done(req, route, resp.status or 502)
                return False
            return self._error(req, route, 502, "bad_gateway",
                               f"instance of service {route.service!r} sent a broken response")
        except ConnectionError:  # the client went away while we wrote to it
            conn.close()
            self.abort = True
            return False
        finally:
            self.upstream = None
        if resp.upgraded:
            await self._tunnel(conn)
            return False
        if resp.reusable and req.complete and not req.upgrade:
            gw.pool.release(conn)
        else:
            conn.close()
        self._done(req, route, resp.status)
        return resp.keep_alive and req.complete and not req.upgrade

    async def _send_body(self, req: _Req, uw: asyncio.StreamWriter, chunked: bool) -> None:
        while True:
            if uw.transport.is_closing():
                # the backend reset the connection (uvloop raises on a write to it): stop sending,
                # and let the response read tell an early answer (413…) from no answer at all
                return
            if req.body:
                uw.writelines([rt.chunk(b) for b in req.body] if chunked else req.body)
                req.body.clear()
                await self._drain(uw, self.gw.response_timeout)
            if req.complete:
                break
            if self.bad:
                raise _ClientGone
            try:
                data = await self._read_client()
            except (TimeoutError, ConnectionError) as e:
                raise _ClientGone from e
            if not data:
                raise _ClientGone
            self._feed(data)
        if chunked and not uw.transport.is_closing():
            uw.write(rt.LAST_CHUNK)

    async def _tunnel(self, conn: UpstreamConn) -> None:
        """After 101: bytes both ways until either side closes."""
        if self.upgrade_tail:
            conn.writer.write(self.upgrade_tail)
        self.upgrade_tail = self.upgrade_tail or b""

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(READ):
                    w.write(data)
                    await w.drain()
            except Exception:  # either side breaking ends the tunnel
                pass

        tasks = [asyncio.ensure_future(pipe(self.reader, conn.writer)),
                 asyncio.ensure_future(pipe(conn.reader, self.writer))]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            conn.close()
