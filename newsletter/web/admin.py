"""The operator's dashboard under ``/admin``, and ``/metrics``.

Off (404) unless ``NEWSLETTER_ADMIN_PASSWORD`` is set. The operator signs in with that
password (compared in constant time; attempts are rate-limited per client address and in
all, and logged); the session is a cookie signed with its own salt (HttpOnly, SameSite=Strict,
Secure behind HTTPS, :data:`SESSION_HOURS` long) that also names a digest of the password,
so that changing the password ends every session, and the time it was opened, so that
signing out ends every session opened before (the time of the last sign-out is in the
store: a copy of the cookie is no use once the operator signed out). A subscriber's link
token is signed for
other purposes and is never a session. Every form carries the app's CSRF token, every page
is ``no-store`` (the app's security headers). ``/metrics`` takes the session or HTTP basic
auth with the admin password.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections import Counter
from datetime import date
from typing import TYPE_CHECKING, Any

from itsdangerous import BadData, URLSafeTimedSerializer
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from ..mail.text import display_text, one_line
from ..models import DeliveryStatus, Status, Subscriber
from ..sending.edition import preview, sent_picks
from ..sending.stats import OUTCOMES, Overview, edition_outcomes, overview
from ..store import Store, SubscriberNotFound
from ..subscribers.profiles import InvalidSubscriber, export_csv, update_subscriber
from .auth import basic_auth_password, client_ip, same_secret
from .charts import CHARTS, THEMES
from .metrics import metrics_text
from .pages import ARCHIVE_HEADERS, Page, notice
from .ratelimit import RateLimiter

if TYPE_CHECKING:
    from .app import WebApp

log = logging.getLogger(__name__)

SESSION_COOKIE = "newsletter_admin"
#: The store's meta key of the time of the last sign-out (Unix time).
SIGNED_OUT_META = "admin_signed_out_at"
SESSION_HOURS = 4
#: Sign-in attempts allowed per client address, and in all, per window.
SIGN_IN_LIMIT_PER_IP = 10
SIGN_IN_LIMIT_TOTAL = 100
SIGN_IN_WINDOW = 15 * 60
#: How long the charts of an overview page draw the figures it computed (seconds), rather
#: than counting everything again for each chart.
CHART_FIGURES_AGE = 60
#: Rows shown at most in a searchable table (the search narrows them down).
ROWS_SHOWN = 200
SVG_HEADERS = {
    # A chart is a picture: its own styles, nothing else.
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'",
}


def _parse_edition(value: str) -> str:
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError as exc:
        raise HTTPException(404) from exc


class Admin:
    """The dashboard's pages, served by :class:`newsletter.web.app.WebApp`'s plumbing."""

    def __init__(self, web: WebApp, keys: list[str]):
        self.web = web
        self.settings = web.settings
        self.password = self.settings.admin_password
        self.sessions = URLSafeTimedSerializer(keys, salt="newsletter.admin-session")
        #: The overview's figures as the last overview page computed them, for its charts.
        self._figures: tuple[float, Overview] | None = None
        # Sessions name the password they were opened with (a digest of it, keyed).
        self.password_tag = hmac.new(
            keys[-1].encode(), self.password.encode(), hashlib.sha256
        ).hexdigest()[:32]

    def routes(self) -> list[Route]:
        return [
            Route("/admin", self.home, methods=["GET"]),
            Route("/admin/sign-in", self.sign_in, methods=["GET", "POST"]),
            Route("/admin/sign-out", self.sign_out, methods=["POST"]),
            Route("/admin/charts/{name}-{theme}.svg", self.chart, methods=["GET"]),
            Route("/admin/editions/{edition}", self.edition, methods=["GET"]),
            Route("/admin/editions/{edition}/preview", self.preview, methods=["GET"]),
            Route("/admin/subscribers", self.subscribers, methods=["GET"]),
            Route("/admin/subscribers.csv", self.export, methods=["GET"]),
            Route("/admin/subscribers/{id:int}", self.subscriber, methods=["GET"]),
            Route("/admin/subscribers/{id:int}/status", self.change_status, methods=["POST"]),
            Route("/metrics", self.metrics, methods=["GET"]),
        ]

    # -- sessions -------------------------------------------------------------------------------

    def _enabled(self) -> None:
        if not self.password:
            raise HTTPException(404)

    async def signed_in(self, request: Request) -> bool:
        cookie = request.cookies.get(SESSION_COOKIE, "")
        if not cookie:
            return False
        try:
            data = self.sessions.loads(cookie, max_age=SESSION_HOURS * 3600)
        except BadData:
            return False
        if not (
            isinstance(data, dict)
            and hmac.compare_digest(str(data.get("password", "")), self.password_tag)
            and isinstance(opened := data.get("at"), int | float)
        ):
            return False
        signed_out = await self.web.db(lambda store: store.get_meta(SIGNED_OUT_META))
        return signed_out is None or opened > float(signed_out)

    def check_password(self, store: Store, given: str, ip: str | None, via: str) -> bool | None:
        """Whether ``given`` is the admin password; None, without looking, once the client
        (or everyone together) failed too often in the window. Each attempt takes its slot
        before it compares, so that attempts made at the same time cannot try more
        passwords than the limit; a right one gives its slot back, as only failures count
        (a scraper with the right password never runs out). Every sign-in, and every
        failure, is logged."""
        limiter = RateLimiter(store, SIGN_IN_WINDOW)
        now = time.time()
        taken: list[str] = []
        for key, limit in (
            (f"admin-sign-in:{ip}", SIGN_IN_LIMIT_PER_IP),
            ("admin-sign-in", SIGN_IN_LIMIT_TOTAL),
        ):
            if not limiter.allow(key, limit, now):
                for done in taken:
                    limiter.give_back(done, now)
                log.warning("admin %s refused from %s: too many failed attempts", via, ip)
                return None
            taken.append(key)
        ok = same_secret(given, self.password)
        if ok:
            for key in taken:
                limiter.give_back(key, now)
        else:
            log.warning("admin %s failed from %s", via, ip)
        if not ok or via == "sign-in":
            store.log_event("admin.sign_in", ok=ok, ip=ip, via=via)
        return ok

    def _secure(self, request: Request) -> bool:
        return request.url.scheme == "https" or self.settings.base_url.startswith("https:")

    def _sign_in_page(self, error: str = "", status: int = 200) -> Page:
        return Page(
            "web/admin/sign_in.html",
            {"title": "Sign in", "error": error, "signed_in": False},
            status,
        )

    async def sign_in(self, request: Request) -> Response:
        self._enabled()
        if request.method == "GET":
            if await self.signed_in(request):
                return RedirectResponse("/admin", 303)
            return self.web.render(request, self._sign_in_page())
        form = await self.web.form(request)
        ip = client_ip(request)
        given = str(form.get("password") or "")
        ok = await self.web.db(self.check_password, given, ip, "sign-in")
        if ok is None:
            page = self._sign_in_page(
                f"Too many attempts. Try again in {SIGN_IN_WINDOW // 60} minutes.", 429
            )
            return self.web.render(request, page, headers={"retry-after": str(SIGN_IN_WINDOW)})
        if not ok:
            return self.web.render(request, self._sign_in_page("Wrong password.", 403))
        log.info("admin signed in from %s", ip)
        response = RedirectResponse("/admin", 303)
        response.set_cookie(
            SESSION_COOKIE,
            self.sessions.dumps(
                {"password": self.password_tag, "n": secrets.token_hex(8), "at": time.time()}
            ),
            max_age=SESSION_HOURS * 3600,
            path="/",
            httponly=True,
            secure=self._secure(request),
            samesite="strict",
        )
        return response

    async def sign_out(self, request: Request) -> Response:
        """Ends every session opened until now, this one and any copy of its cookie."""
        self._enabled()
        await self.web.form(request)
        if await self.signed_in(request):
            signed_out = str(time.time())
            await self.web.db(lambda store: store.set_meta(SIGNED_OUT_META, signed_out))
            log.info("admin signed out from %s", client_ip(request))
        response = RedirectResponse("/admin/sign-in", 303)
        response.delete_cookie(SESSION_COOKIE, path="/", samesite="strict")
        return response

    async def _guard(self, request: Request) -> Response | None:
        """None for a signed-in operator; else where to go (404 while admin is off)."""
        self._enabled()
        if await self.signed_in(request):
            return None
        return RedirectResponse("/admin/sign-in", 303)

    def _page(self, request: Request, template: str, title: str, **context: Any) -> Response:
        return self.web.render(request, Page(f"web/admin/{template}", {"title": title, **context}))

    # -- the overview ---------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        if (refused := await self._guard(request)) is not None:
            return refused
        figures: Overview = await self.web.db(overview, self.settings)
        self._figures = (time.monotonic(), figures)
        totals = {
            k: sum(d[k] for d in figures.subscriber_days)
            for k in ("joined", "confirmed", "unsubscribed", "bounced")
        }
        feedback = {k: sum(d[k] for d in figures.feedback_days) for k in ("more", "less")}
        return self._page(
            request,
            "overview.html",
            "Dashboard",
            figures=figures,
            totals=totals,
            feedback=feedback,
            outcomes=OUTCOMES,
            charts=list(CHARTS),
            active_days=[d for d in figures.subscriber_days if any(d[k] for k in totals)],
            feedback_active=[d for d in figures.feedback_days if d["more"] or d["less"]],
        )

    async def chart(self, request: Request) -> Response:
        if (refused := await self._guard(request)) is not None:
            return refused
        name, theme = request.path_params["name"], request.path_params["theme"]
        if name not in CHARTS or theme not in THEMES:
            raise HTTPException(404)
        if self._figures and time.monotonic() - self._figures[0] < CHART_FIGURES_AGE:
            figures = self._figures[1]
        else:
            figures = await self.web.db(overview, self.settings)
        return Response(
            CHARTS[name](figures, theme), media_type="image/svg+xml", headers=SVG_HEADERS
        )

    # -- an edition -----------------------------------------------------------------------------

    async def edition(self, request: Request) -> Response:
        if (refused := await self._guard(request)) is not None:
            return refused
        edition = _parse_edition(request.path_params["edition"])
        query = request.query_params.get("q", "").strip().lower()

        def work(store: Store) -> dict[str, Any]:
            rows = sorted(store.deliveries.for_edition(edition), key=lambda d: d.email.lower())
            sent = Counter(
                paper_id
                for d in rows
                if d.status in (DeliveryStatus.SENT, DeliveryStatus.UNKNOWN)
                for paper_id in d.paper_ids
            )
            top = sent.most_common(10)
            papers = {p.id: p for p in store.papers_by_ids([i for i, _ in top])}
            found = [d for d in rows if query in d.email.lower()] if query else rows
            unknown_events = {
                e["subscriber_id"]: e["detail"]
                for e in store.events("delivery.unknown", limit=ROWS_SHOWN, edition=edition)
            }
            return {
                "counts": edition_outcomes(store, edition),
                "total": len(rows),
                "readers": found[:ROWS_SHOWN],
                "matches": len(found),
                "top_papers": [
                    (one_line(display_text(papers[i].title)) if i in papers else i, i, n)
                    for i, n in top
                ],
                "failures": [
                    d for d in rows if d.status in (DeliveryStatus.FAILED, DeliveryStatus.REJECTED)
                ],
                "unknown": [
                    (d, unknown_events.get(d.subscriber_id, {}))
                    for d in rows
                    if d.status == DeliveryStatus.UNKNOWN
                ],
            }

        data = await self.web.db(work)
        return self._page(
            request, "edition.html", f"Edition {edition}", edition=edition, query=query, **data
        )

    async def preview(self, request: Request) -> Response:
        """The edition's email as one reader got it (the ledger's papers) or, if it was not
        sent to them, as it would be planned for them now; nothing is sent or recorded."""
        if (refused := await self._guard(request)) is not None:
            return refused
        edition = date.fromisoformat(_parse_edition(request.path_params["edition"]))
        email = request.query_params.get("email", "").strip()

        def work(store: Store) -> str:
            subscriber, planned, renderer = preview(store, self.settings, email, edition)
            recorded = sent_picks(store, subscriber, edition)
            picks = planned if recorded is None else recorded
            return renderer.render(subscriber, picks, edition).html

        try:
            html = await self.web.db(work)
        except SubscriberNotFound:
            return self.web.render(
                request,
                notice(
                    "No such reader",
                    f"Nobody on the list has the address {email!r}.",
                    status=404,
                    links=[("Back to the edition", f"/admin/editions/{edition}")],
                ),
            )
        return HTMLResponse(html, headers=ARCHIVE_HEADERS)

    # -- subscribers ----------------------------------------------------------------------------

    async def subscribers(self, request: Request) -> Response:
        if (refused := await self._guard(request)) is not None:
            return refused
        query = request.query_params.get("q", "").strip()

        def work(store: Store) -> list[Subscriber]:
            return [store.get_subscriber(i) for i in store.search_subscribers(query, ROWS_SHOWN)]

        found = await self.web.db(work)
        return self._page(
            request, "subscribers.html", "Subscribers", query=query, subscribers=found
        )

    async def export(self, request: Request) -> Response:
        if (refused := await self._guard(request)) is not None:
            return refused
        text = await self.web.db(lambda store: export_csv(store.list_subscribers()))
        return Response(
            text,
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": 'attachment; filename="subscribers.csv"'},
        )

    def _subscriber_context(self, store: Store, subscriber_id: int) -> dict[str, Any]:
        try:
            subscriber = store.get_subscriber(subscriber_id)
        except SubscriberNotFound as exc:
            raise HTTPException(404) from exc
        history = sorted(
            (
                d
                for status in DeliveryStatus
                for d in store.deliveries.latest(subscriber.id, status, 30)
            ),
            key=lambda d: d.edition,
            reverse=True,
        )[:30]
        signals = store.feedback([subscriber.id]).get(subscriber.id, {})
        papers = {p.id: p for p in store.papers_by_ids(signals)}
        return {
            "subscriber": subscriber,
            "history": history,
            "feedback": [
                (one_line(display_text(papers[i].title)) if i in papers else i, i, signal)
                for i, signal in signals.items()
            ],
            "events": store.subscriber_events(subscriber.id, 30),
            "statuses": [str(s) for s in Status],
        }

    async def subscriber(self, request: Request) -> Response:
        if (refused := await self._guard(request)) is not None:
            return refused
        subscriber_id = request.path_params["id"]
        context = await self.web.db(self._subscriber_context, subscriber_id)
        return self._page(
            request, "subscriber.html", context["subscriber"].email, saved=False, **context
        )

    async def change_status(self, request: Request) -> Response:
        """The console's ``subscribers update --status``, behind a CSRF-checked form."""
        if (refused := await self._guard(request)) is not None:
            return refused
        form = await self.web.form(request)
        subscriber_id = request.path_params["id"]
        status = str(form.get("status") or "")

        def work(store: Store) -> dict[str, Any]:
            subscriber = store.get_subscriber(subscriber_id)
            update_subscriber(store, subscriber.email, status=status)
            store.log_event("admin.status", subscriber_id, new=status)
            return self._subscriber_context(store, subscriber_id)

        try:
            context = await self.web.db(work)
        except (InvalidSubscriber, SubscriberNotFound) as exc:
            raise HTTPException(400) from exc
        log.info("admin set subscriber %d to %s", subscriber_id, status)
        return self._page(
            request, "subscriber.html", context["subscriber"].email, saved=True, **context
        )

    # -- metrics --------------------------------------------------------------------------------

    async def metrics(self, request: Request) -> Response:
        self._enabled()
        if not await self.signed_in(request):
            header = request.headers.get("authorization", "")
            given = basic_auth_password(header)
            ok = (
                None
                if given is None
                else await self.web.db(self.check_password, given, client_ip(request), "metrics")
            )
            if ok is None and given is not None:
                return Response("too many attempts", status_code=429, media_type="text/plain")
            if not ok:
                return Response(
                    "unauthorized",
                    status_code=401,
                    media_type="text/plain",
                    headers={"WWW-Authenticate": 'Basic realm="metrics"'},
                )
        body, content_type = await self.web.db(metrics_text, self.settings, time.time())
        return Response(body, media_type=content_type)
