"""Office 365 Management Activity API: subscriptions, content listings, and content blobs.

Root `/api/v1.0/{tenant}/activity/feed` (the `/api/v1/` form of NextPageUri is accepted too).
Listings are windowed on `contentCreated` (inclusive start, exclusive end) with the 24 h and 7-day
rules, paged through the `NextPageUri` header; errors are `{"error":{"code":"AFxxxxx",...}}`
(protocols.md §2). Query parameter names are matched case-insensitively.

This module is the listener: routing, the token/tenant/quota/fault gate, subscriptions, the
content listing and blob fetches. The window and nextPage rules are `management_paging.py`, the
AF error answers `management_errors.py`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from emulator.microsoft.blobs import Blob
from emulator.microsoft.management_errors import JSON, AfError, error_response, unauthorized
from emulator.microsoft.management_paging import next_page, page_after, page_token, param, window
from emulator.world.catalog import CONTENT_TYPES
from emulator.world.clock import content_time, now_ticks, rfc3339
from emulator.world.faults import HTML_ERROR, stall
from emulator.world.scenario import GUID_RE
from emulator.world.state import State


@dataclass


class Subscription:
    status: str  # "enabled" or "disabled"
    webhook: dict[str, str] | None = None


class ManagementService:
    """The `management` listener: stands for https://manage.office.com."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.subs: dict[str, dict[str, Subscription]] = {}
        self.by_id: dict[str, dict[str, Blob]] = {}
        plan = state.scenario.management
        for tenant in state.scenario.tenants:
            scn_types = [ct for ct, stream in CONTENT_TYPES.items() if stream in tenant.streams]
            subs = self.subs.setdefault(tenant.id, {})
            for ct in plan.subscribed if plan.subscribed is not None else scn_types:
                subs[ct] = Subscription("enabled")
            for ct in plan.disabled:
                subs[ct] = Subscription("disabled")
        for (tenant_id, _), blobs in state.blobs.items():
            self.by_id.setdefault(tenant_id, {}).update({b.content_id: b for b in blobs})
        self.admin_disabled = set(plan.disabled)
        self.last_start: dict[str, int] = {}  # tenant -> ticks of its last accepted start request

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._stall])
        root = "/api/{ver:v1\\.0|v1}/{tenant}/activity/feed"
        app.router.add_post(root + "/subscriptions/start", self.start)
        app.router.add_post(root + "/subscriptions/stop", self.stop)
        app.router.add_get(root + "/subscriptions/list", self.list)
        app.router.add_get(root + "/subscriptions/content", self.content)
        app.router.add_get(root + "/subscriptions/notifications", self.notifications)
        app.router.add_get(root + "/audit/{content_id}", self.blob)
        return app

    # -- plumbing -------------------------------------------------------------------------------

    @web.middleware
    async def _stall(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        await stall(self.state.scenario.management.stalls, request, "management", self.state.faults)
        return await handler(request)

    def _gate(
        self, request: web.Request, method: str, listing: bool = False
    ) -> tuple[str, str | None] | web.Response:
        """Token, tenant, quota and fault checks shared by every operation; (tenant, fault) or a response."""
        claims = self.state.tokens.check(request.headers.get("Authorization"), "management")
        if isinstance(claims, str):
            return unauthorized()
        tenant = request.match_info["tenant"].lower()
        if not GUID_RE.match(tenant):
            return error_response(
                AfError(400, "AF20013", f"The tenant ID passed in the URL ({tenant}) is not a valid GUID.")
            )
        if tenant != claims.tenant:
            return error_response(
                AfError(
                    401,
                    "AF20010",
                    f"The tenant ID passed in the URL ({tenant}) does not "
                    f"match the tenant ID passed in the access token "
                    f"({claims.tenant}).",
                )
            )
        if self.state.management_quota.admit(tenant, now_ticks()) is not None:
            publisher = param(request, "PublisherIdentifier") or "00000000-0000-0000-0000-000000000000"
            self.state.faults.log(
                request,
                "management",
                "quota",
                self.state.scenario.management.throttle_status,
                tenant,
                **self._covers(request, tenant),
            )
            return error_response(
                AfError(
                    self.state.scenario.management.throttle_status,
                    "AF429",
                    f"Too many requests. Method={method}, PublisherId={publisher}",
                )
            )
        fault = self.state.faults.draw(list_request=listing)
        if fault in ("throttle", "server_error", "html_error", "token_expiry"):
            return self._fault(request, fault, method, tenant)
        return tenant, fault

    def _fault(self, request: web.Request, fault: str, method: str, tenant: str) -> web.Response:
        faults = self.state.faults
        response: web.Response
        if fault == "throttle":
            publisher = param(request, "PublisherIdentifier") or "00000000-0000-0000-0000-000000000000"
            status = self.state.scenario.management.throttle_status
            response = error_response(
                AfError(status, "AF429", f"Too many requests. Method={method}, PublisherId={publisher}")
            )
        elif fault == "token_expiry":
            response = unauthorized()
        elif fault == "html_error":
            response = web.Response(
                status=faults.choice((502, 503, 504)), body=HTML_ERROR, content_type="text/html"
            )
        else:
            response = error_response(
                AfError(
                    faults.choice((500, 502, 503, 504)),
                    "AF50000",
                    "An internal error occurred. Retry the request.",
                )
            )
        faults.log(request, "management", fault, response.status, tenant, **self._covers(request, tenant))
        return response

    async def _finish(
        self, request: web.Request, fault: str | None, tenant: str, response: web.Response
    ) -> web.StreamResponse:
        if fault in ("reset", "truncated"):
            self.state.faults.log(
                request, "management", fault, response.status, tenant, **self._covers(request, tenant)
            )
            return await self.state.faults.corrupt(request, fault, response)
        return response

    def _covers(self, request: web.Request, tenant: str) -> dict[str, object]:
        """For the fault log: the stream and blob, or the contentCreated window, a request was about."""
        cid = request.match_info.get("content_id")
        if cid is not None:
            blob = self.by_id.get(tenant, {}).get(cid)
            stream = CONTENT_TYPES.get(blob.content_type) if blob is not None else None
            return {"stream": stream, "content_id": cid}
        stream = CONTENT_TYPES.get(param(request, "contentType") or "")
        if stream is None or not request.path.endswith("/subscriptions/content"):
            return {"stream": stream} if stream else {}
        try:
            lo, hi = window(request, now_ticks())
            after = page_after(param(request, "nextPage"))
        except AfError:
            return {"stream": stream}
        if after is not None:
            lo = max(lo, after[0] * 10_000)
        return {"stream": stream, "created_from": rfc3339(lo), "created_to": rfc3339(hi)}

    def _content_type(self, request: web.Request) -> str:
        ct = param(request, "contentType")
        if not ct:
            raise AfError(400, "AF20001", "Missing parameter: contentType.")
        if ct not in CONTENT_TYPES:
            raise AfError(400, "AF20020", "The specified content type is not valid.")
        return ct

    # -- subscriptions --------------------------------------------------------------------------

    async def start(self, request: web.Request) -> web.StreamResponse:
        gate = self._gate(request, "StartSubscription")
        if isinstance(gate, web.Response):
            return gate
        tenant, fault = gate
        try:
            ct = self._content_type(request)
            if ct in self.admin_disabled:
                raise AfError(400, "AF20023", "The subscription was disabled by a tenant admin.")
            current = self.subs[tenant].get(ct)
            if current is not None and current.status == "enabled":
                raise AfError(400, "AF20024", "The subscription is already enabled. No property change.")
            self._start_interval(request, tenant)
        except AfError as err:
            return error_response(err)
        webhook = None
        if request.can_read_body:
            raw = await request.read()
            if raw.strip():
                try:
                    hook = orjson.loads(raw).get("webhook")
                except (ValueError, AttributeError):
                    return error_response(AfError(400, "AF20002", "The request body is not valid JSON."))
                if isinstance(hook, dict):
                    webhook = {"status": "enabled", **{k: str(v) for k, v in hook.items()}}
        self.subs[tenant][ct] = Subscription("enabled", webhook)
        body = orjson.dumps({"contentType": ct, "status": "enabled", "webhook": webhook})
        return await self._finish(request, fault, tenant, web.Response(body=body, content_type=JSON))

    def _start_interval(self, request: web.Request, tenant: str) -> None:
        """The API reference asks for 15 minutes between subscription start requests (protocols.md
        §2.5); it documents no code of its own for a start sent sooner, so it is refused with the one
        documented throttling error, AF429 (HTTP 403 as in Microsoft's example). Per tenant, whatever
        the content type; stop requests are not limited."""
        interval, now = self.state.scenario.management.start_interval, now_ticks()
        last = self.last_start.get(tenant)
        if interval and last is not None and now - last < interval:
            publisher = param(request, "PublisherIdentifier") or "00000000-0000-0000-0000-000000000000"
            status = self.state.scenario.management.throttle_status
            self.state.faults.log(request, "management", "start_interval", status, tenant)
            raise AfError(status, "AF429",
                          f"Too many requests. Method=StartSubscription, PublisherId={publisher}")
        self.last_start[tenant] = now

    async def stop(self, request: web.Request) -> web.StreamResponse:
        gate = self._gate(request, "StopSubscription")
        if isinstance(gate, web.Response):
            return gate
        tenant, fault = gate
        try:
            ct = self._content_type(request)
        except AfError as err:
            return error_response(err)
        if ct not in self.subs[tenant]:
            return error_response(
                AfError(400, "AF20022", "No subscription found for the specified content type.")
            )
        self.subs[tenant][ct] = Subscription("disabled")
        return await self._finish(request, fault, tenant, web.Response(status=200))

    async def list(self, request: web.Request) -> web.StreamResponse:
        gate = self._gate(request, "ListSubscriptions")
        if isinstance(gate, web.Response):
            return gate
        tenant, fault = gate
        items = [
            {"contentType": ct, "status": s.status, "webhook": s.webhook}
            for ct, s in sorted(self.subs[tenant].items())
        ]
        return await self._finish(
            request, fault, tenant, web.Response(body=orjson.dumps(items), content_type=JSON)
        )

    async def notifications(self, request: web.Request) -> web.StreamResponse:
        gate = self._gate(request, "ListNotifications")
        if isinstance(gate, web.Response):
            return gate
        tenant, fault = gate
        try:
            self._subscribed(tenant, self._content_type(request))
        except AfError as err:
            return error_response(err)
        return await self._finish(request, fault, tenant, web.Response(body=b"[]", content_type=JSON))

    def _subscribed(self, tenant: str, ct: str) -> None:
        if ct in self.admin_disabled:
            raise AfError(400, "AF20023", "The subscription was disabled by a tenant admin.")
        sub = self.subs[tenant].get(ct)
        if sub is None or sub.status != "enabled":
            raise AfError(400, "AF20022", "No subscription found for the specified content type.")

    # -- content --------------------------------------------------------------------------------

    async def content(self, request: web.Request) -> web.StreamResponse:
        gate = self._gate(request, "ListContent", listing=True)
        if isinstance(gate, web.Response):
            return gate
        tenant, fault = gate
        now = now_ticks()
        try:
            ct = self._content_type(request)
            self._subscribed(tenant, ct)
            lo, hi = window(request, now)
            after = page_after(param(request, "nextPage"))
        except AfError as err:
            return error_response(err)
        blobs = self.state.blobs.get((tenant, CONTENT_TYPES[ct]), [])
        chosen = [
            b
            for b in blobs
            if lo <= b.created < hi
            and b.created <= now
            and (after is None or (b.created // 10_000, b.seq) > after)
        ]
        size = self.state.scenario.management.page_size
        if fault == "empty_page":
            self.state.faults.log(request, "management", fault, 200, tenant, **self._covers(request, tenant))
            page, more, token = [], True, param(request, "nextPage")
        else:
            page, more = chosen[:size], len(chosen) > size
            token = page_token(page[-1]) if page else None
        root = f"https://{request.host}/api/v1.0/{tenant}/activity/feed"
        items = [
            {
                "contentType": ct,
                "contentId": b.content_id,
                "contentUri": f"{root}/audit/{b.content_id}",
                "contentCreated": content_time(b.created),
                "contentExpiration": content_time(b.expires),
            }
            for b in page
        ]
        headers = {}
        if more:
            form = self.state.scenario.management.next_page_form
            headers["NextPageUri"] = next_page(request, tenant, ct, token, form)
        response = web.Response(body=orjson.dumps(items), content_type=JSON, headers=headers)
        return await self._finish(request, None if fault == "empty_page" else fault, tenant, response)

    async def blob(self, request: web.Request) -> web.StreamResponse:
        gate = self._gate(request, "GetBlob")
        if isinstance(gate, web.Response):
            return gate
        tenant, fault = gate
        cid = request.match_info["content_id"]
        blob = self.by_id.get(tenant, {}).get(cid)
        now = now_ticks()
        if blob is not None and blob.created <= now and now >= blob.expires:
            return error_response(
                AfError(
                    400,
                    "AF20051",
                    f"Content requested with the key {cid} has already "
                    "expired. Content older than 7 days cannot be retrieved.",
                )
            )
        if blob is None or blob.created > now or blob.unavailable:
            if blob is not None and blob.unavailable:
                self.state.faults.log(
                    request, "management", "unavailable_blob", 404, tenant, **self._covers(request, tenant)
                )
            return error_response(AfError(404, "AF20050", f"The specified content ({cid}) does not exist."))
        response = web.Response(body=blob.body, content_type=JSON, headers={"request-id": str(uuid.uuid4())})
        return await self._finish(request, fault, tenant, response)
