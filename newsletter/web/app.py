"""The web app: Starlette on uvicorn.

Every page is rendered from ``templates/web/`` with the look of the email, works without
JavaScript and on a phone. A handler reads the request, calls :mod:`newsletter.subscribers.subscriptions`
in a worker thread (with a database connection of its own: SQLite connections stay in the
thread that opened them) and renders the answer. A link token that does not verify, for
whatever reason, gets one friendly page with no detail. Every form carries a CSRF token,
except the RFC 8058 one-click unsubscribe, which mail providers POST with no cookie.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from typing import Any, TypeVar
from zoneinfo import available_timezones

import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..mail.render import (
    Renderer,
    feedback_url,
    paper_url,
    template_environment,
    templates_dir,
)
from ..mail.text import one_line
from ..mail.transport import check_real_send, transport_from_url
from ..models import Pick, Status, Subscriber
from ..ranking.trending import PAGE_SIZE, trending_papers
from ..sending.edition import preview_picks, recently_sent, sent_picks
from ..settings import Settings
from ..store import Store, open_store
from ..subscribers.bounces import (
    PARSERS,
    WebhookError,
    apply_events,
    parse_webhook,
)
from ..subscribers.subscriptions import (
    PREFERENCE_CHECKS,
    Feedback,
    InvalidForm,
    answer_sign_up,
    check_sign_up,
    confirm_subscription,
    expire_pending,
    read_feedback,
    read_link,
    resubscribe,
    save_preferences,
    start_subscription,
    unsubscribe,
    visitor_profile,
)
from ..tokens import BadToken, email_digest, link_signer
from .admin import Admin
from .auth import basic_auth_ok, client_ip
from .csrf import COOKIE, CSRF, FIELD, MAX_AGE, CSRFError
from .pages import ARCHIVE_HEADERS, Button, Page, notice
from .ratelimit import RateLimiter
from .trending_pages import atom_feed, listing, page_number, page_offset, parse_day

log = logging.getLogger(__name__)

T = TypeVar("T")


ONE_CLICK = [("List-Unsubscribe", "One-Click")]
#: No form of ours comes near this; a larger body is refused (413) before it is read.
MAX_BODY = 64 * 1024
#: The relay webhooks' limit: SendGrid batches events up to 768 KB in one post, Postmark
#: posts one event (with the bounced message's dump if "include content" is on).
WEBHOOK_MAX_BODY = 5 * 1024 * 1024
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    # The paths carry personal tokens: never hand them to the sites of the papers.
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every response that does not set them itself."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class WebApp:
    """The pages and what they do; :func:`create_app` wires them into Starlette."""

    def __init__(self, settings: Settings):
        self.settings = settings
        real_send = transport_from_url(settings.transport, settings).delivers_mail
        if real_send:
            check_real_send(settings)
        with open_store(settings) as store:
            self.signer = link_signer(settings, store, real_send=real_send)
        # Signed with the link key (its own salt) so that a form outlives a restart; a local
        # run without one signs with a key of its own.
        keys = (
            [*settings.old_secret_keys, settings.secret_key]
            if settings.secret_key
            else [secrets.token_urlsafe(32)]
        )
        self.csrf = CSRF(keys)
        self.admin = Admin(self, keys)
        self.brand = settings.brand
        self.env = template_environment()
        self.env.filters["one_line"] = one_line
        self.css = (templates_dir() / "web" / "site.css").read_text(encoding="utf-8")
        self.timezones = sorted(available_timezones())

    def routes(self) -> list[Route]:
        return [
            Route("/", self.home, methods=["GET"]),
            Route("/preview", self.try_interests, methods=["POST"]),
            Route("/trending.atom", self.trending_feed, methods=["GET"]),
            Route("/trending/{day}", self.trending_day, methods=["GET"]),
            Route("/subscribe", self.subscribe_form, methods=["GET"]),
            Route("/subscribe", self.subscribe, methods=["POST"]),
            Route("/confirm/{token}", self.confirm, methods=["GET", "POST"]),
            Route("/preferences/{token}", self.preferences, methods=["GET", "POST"]),
            Route("/unsubscribe/{token}", self.unsubscribe, methods=["GET", "POST"]),
            Route("/feedback/{token}", self.feedback, methods=["GET", "POST"]),
            Route("/archive/{token}", self.archive, methods=["GET"]),
            Route("/site.css", self.stylesheet, methods=["GET"]),
            Route(
                "/webhooks/{provider}",
                self.webhook,
                methods=["POST"],
                max_body_size=WEBHOOK_MAX_BODY,  # instead of MAX_BODY
            ),
            *self.admin.routes(),
        ]

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        expired = await self.db(expire_pending, self.settings)
        if expired:
            log.info("forgot %d sign-up(s) never confirmed", len(expired))
        yield

    # -- plumbing -----------------------------------------------------------------------------

    def in_store(self, fn: Callable[..., T], *args: Any) -> T:
        with open_store(self.settings) as store:
            return fn(store, *args)

    async def db(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(store, *args)`` in a worker thread, with a connection of its own."""
        return await run_in_threadpool(self.in_store, fn, *args)

    def read(self, store: Store, purpose: str, token: str) -> tuple[Subscriber, dict[str, Any]]:
        return read_link(store, self.settings, self.signer, purpose, token)

    async def form(self, request: Request) -> FormData:
        """The posted form, once its CSRF token is checked (CSRFError otherwise)."""
        form = await request.form(max_files=0, max_fields=64)
        self.csrf.check(request, form)
        return form

    def render(
        self,
        request: Request,
        page: Page,
        *,
        background: BackgroundTask | None = None,
        headers: dict[str, str] | None = None,
    ) -> HTMLResponse:
        token, nonce = self.csrf.token(request)
        context = {
            "brand": self.brand,
            "sender_identity": self.settings.sender_identity,
            "csrf_field": FIELD,
            "csrf_token": token,
            **page.context,
        }
        html = self.env.get_template(page.template).render(context)
        response = HTMLResponse(html, page.status, headers=headers, background=background)
        response.set_cookie(
            COOKIE,
            nonce,
            max_age=MAX_AGE,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )
        return response

    # -- subscribe and confirm ----------------------------------------------------------------

    def subscribe_page(
        self, values: dict[str, str], errors: dict[str, str], status: int = 200
    ) -> Page:
        return Page(
            "web/subscribe.html",
            {
                "title": "Subscribe",
                "values": {k: values.get(k, "") for k in ("email", "interests", "categories")},
                "errors": errors,
            },
            status,
        )

    async def subscribe_form(self, request: Request) -> Response:
        return self.render(request, self.subscribe_page({}, {}))

    async def subscribe(self, request: Request) -> Response:
        """The answer is the same whatever the address's state (see start_subscription),
        and so is the work before it: the email is composed and sent after the answer, in
        a background task that every state gets (doing nothing for a bounced address), so
        the answer's time does not tell the state either."""
        form = await self.form(request)
        values = {k: str(form.get(k) or "") for k in ("email", "interests", "categories")}
        try:
            sign_up = check_sign_up(values)
        except InvalidForm as exc:
            return self.render(request, self.subscribe_page(values, exc.errors, 400))
        ip = client_ip(request)
        settings = self.settings

        def work(store: Store) -> tuple[bool, Subscriber | None]:
            """(allowed, who gets the email: none for a suppressed address)."""
            limiter = RateLimiter(store, settings.subscribe_limit_window)
            if not (
                limiter.allow(f"subscribe-ip:{ip}", settings.subscribe_limit_per_ip)
                and limiter.allow(
                    f"subscribe-address:{email_digest(sign_up.email)}",
                    settings.subscribe_limit_per_address,
                )
            ):
                return False, None
            return True, start_subscription(store, settings, self.signer, sign_up, ip=ip)

        allowed, subscriber = await self.db(work)
        if not allowed:
            minutes = -(-settings.subscribe_limit_window // 60)
            page = notice(
                "Too many sign-ups",
                f"We received too many sign-ups from here or for this address. Please try "
                f"again in {minutes} minutes.",
                status=429,
            )
            return self.render(
                request, page, headers={"retry-after": str(settings.subscribe_limit_window)}
            )
        page = notice(
            "Check your inbox",
            "We have sent an email to the address you gave. Follow the link in it to "
            "confirm your subscription: nothing is sent to you until then.",
            "No email after a few minutes? Look in your spam folder, or sign up again.",
        )
        task = BackgroundTask(self.in_store, answer_sign_up, settings, self.signer, subscriber)
        return self.render(request, page, background=task)

    async def confirm(self, request: Request) -> Response:
        """A GET only shows the button, so that link scanners cannot confirm."""
        token = request.path_params["token"]
        if request.method == "GET":
            subscriber, _ = await self.db(self.read, "confirm", token)
            return self.render(
                request,
                notice(
                    "Confirm your subscription",
                    f"Send {self.brand}, a personal selection of new research papers, "
                    f"to {subscriber.email}?",
                    button=Button("Confirm my subscription", request.url.path),
                ),
            )
        await self.form(request)
        ip = client_ip(request)

        def work(store: Store) -> tuple[Subscriber, str]:
            subscriber, _ = self.read(store, "confirm", token)
            subscriber = confirm_subscription(store, subscriber, ip=ip)
            return subscriber, self.signer.path("preferences", subscriber)

        subscriber, preferences = await self.db(work)
        return self.render(
            request,
            notice(
                "You are subscribed",
                f"{self.brand} will come to {subscriber.email} at about "
                f"{subscriber.delivery_hour:02d}:00 ({subscriber.timezone}) on days with new "
                "papers for you.",
                "Refine your interests, or choose a weekly email, in your preferences.",
                links=[("Open my preferences", preferences)],
            ),
        )

    # -- the public pages: the day's trending list -------------------------------------------

    def trending_list(self, store: Store, day: date, page: int) -> dict[str, Any]:
        """One page of ``day``'s trending list, for a template."""
        listed = trending_papers(
            store, day, PAGE_SIZE + 1, page_offset(page), days=self.settings.candidate_days
        )
        return {
            "items": [listing(item) for item in listed[:PAGE_SIZE]],
            "page": page,
            "has_next": len(listed) > PAGE_SIZE,
        }

    def home_page(
        self,
        store: Store,
        page: int = 1,
        *,
        tried: str = "",
        preview: list[Pick] | None = None,
        errors: dict[str, str] | None = None,
    ) -> Page:
        """The sign-up form, "See what you would get" (with its answer, if any) and today's
        trending list."""
        today = utc_today()
        return Page(
            "web/home.html",
            {
                "title": "Trending papers in your inbox",
                "signup": {"email": "", "interests": tried, "categories": ""},
                "try_values": {"try_interests": tried},
                "try_errors": errors or {},
                "preview": None if preview is None else [_paper_item(p) for p in preview],
                "archive": f"/trending/{today.isoformat()}",
                **self.trending_list(store, today, page),
            },
            400 if errors else 200,
        )

    async def home(self, request: Request) -> Response:
        page = page_number(request.query_params.get("page"))
        return self.render(request, await self.db(self.home_page, page))

    async def try_interests(self, request: Request) -> Response:
        """ "See what you would get": the papers today's ranking picks for the interests
        typed, with their reasons; nothing is stored (but the count of the rate limit, which
        is the sign-up's)."""
        form = await self.form(request)
        tried = str(form.get("try_interests") or "")
        ip = client_ip(request)
        settings = self.settings

        def work(store: Store) -> Page | None:
            try:
                visitor = visitor_profile(settings, tried)
            except InvalidForm as exc:
                return self.home_page(store, tried=tried, errors={"try_interests": str(exc)})
            limiter = RateLimiter(store, settings.subscribe_limit_window)
            if not limiter.allow(f"preview-ip:{ip}", settings.subscribe_limit_per_ip):
                return None
            picks = preview_picks(store, settings, visitor, date.today())
            return self.home_page(store, tried=visitor.interests, preview=picks)

        page = await self.db(work)
        if page is None:
            minutes = -(-settings.subscribe_limit_window // 60)
            return self.render(
                request,
                notice(
                    "Too many previews",
                    f"We received too many requests from here. Please try again in {minutes} "
                    "minutes.",
                    status=429,
                    links=[("Home", "/")],
                ),
                headers={"retry-after": str(settings.subscribe_limit_window)},
            )
        return self.render(request, page)

    async def trending_day(self, request: Request) -> Response:
        """``/trending/YYYY-MM-DD``: that day's trending list, paged like the home page's."""
        day = parse_day(request.path_params["day"])
        if day is None:
            raise HTTPException(404)
        page = page_number(request.query_params.get("page"))
        today = utc_today()
        shown = await self.db(self.trending_list, day, page)
        return self.render(
            request,
            Page(
                "web/trending.html",
                {
                    "title": f"Trending papers, {day:%B} {day.day}, {day.year}",
                    "day_label": f"{day:%A}, {day:%B} {day.day}, {day.year}",
                    "path": request.url.path,
                    "previous_day": (day - timedelta(days=1)).isoformat(),
                    "next_day": (day + timedelta(days=1)).isoformat() if day < today else None,
                    **shown,
                },
            ),
        )

    async def trending_feed(self, request: Request) -> Response:
        """``/trending.atom``: today's trending list (its first page) as an Atom feed."""
        today = utc_today()
        listed = await self.db(
            lambda store: trending_papers(store, today, days=self.settings.candidate_days)
        )
        return Response(
            atom_feed(self.settings, today, listed),
            media_type="application/atom+xml; charset=utf-8",
            headers={"cache-control": "public, max-age=300"},
        )

    # -- preferences --------------------------------------------------------------------------

    async def preferences(self, request: Request) -> Response:
        token = request.path_params["token"]
        form = await self.form(request) if request.method == "POST" else None

        def work(store: Store) -> Page:
            subscriber, _ = self.read(store, "preferences", token)
            if form is None:
                return self.preferences_page(store, subscriber, request.url.path)
            values = {k: str(form.get(k) or "") for k in PREFERENCE_CHECKS}
            try:
                subscriber, changed = save_preferences(store, subscriber, values)
            except InvalidForm as exc:
                return self.preferences_page(
                    store, subscriber, request.url.path, values=values, errors=exc.errors
                )
            preview = (
                preview_picks(store, self.settings, subscriber, date.today()) if changed else None
            )
            return self.preferences_page(
                store, subscriber, request.url.path, saved=True, preview=preview
            )

        return self.render(request, await self.db(work))

    def preferences_page(
        self,
        store: Store,
        subscriber: Subscriber,
        path: str,
        *,
        values: dict[str, str] | None = None,
        errors: dict[str, str] | None = None,
        saved: bool = False,
        preview: list[Pick] | None = None,
    ) -> Page:
        current = {
            "interests": subscriber.interests,
            "categories": ", ".join(subscriber.categories),
            "muted_terms": ", ".join(subscriber.muted_terms),
            "max_papers": str(subscriber.max_papers),
            "trending_papers": str(
                self.settings.trending_papers
                if subscriber.trending_papers is None
                else subscriber.trending_papers
            ),
            "frequency": subscriber.frequency,
            "weekly_day": str(subscriber.weekly_day),
            "delivery_hour": str(subscriber.delivery_hour),
            "timezone": subscriber.timezone,
            "paused_until": subscriber.paused_until or "",
        }
        return Page(
            "web/preferences.html",
            {
                "title": "Your preferences",
                "action": path,
                "email": subscriber.email,
                "status": str(subscriber.status),
                "values": values or current,
                "errors": errors or {},
                "saved": saved,
                "preview": None if preview is None else [_paper_item(p) for p in preview],
                "recent": [
                    {"edition": edition, "title": p.title, "url": paper_url(p)}
                    for edition, p in recently_sent(store, subscriber)
                ],
                "unsubscribe": self.signer.path("unsubscribe", subscriber),
                "weekday_options": [(str(i), day) for i, day in enumerate(WEEKDAYS)],
                "hour_options": [(str(h), f"{h:02d}:00") for h in range(24)],
                "timezone_options": [(tz, tz) for tz in self.timezones],
            },
            400 if errors else 200,
        )

    # -- relay webhooks -------------------------------------------------------------------------

    async def webhook(self, request: Request) -> Response:
        """Bounces and complaints from the relay (``/webhooks/postmark`` or ``sendgrid``),
        authenticated with HTTP basic auth whose password is ``NEWSLETTER_WEBHOOK_SECRET``
        (put it in the webhook URL at the provider: https://hooks:SECRET@host/webhooks/...).
        Disabled (404) while no secret is set."""
        provider = request.path_params["provider"]
        if provider not in PARSERS or not self.settings.webhook_secret:
            return Response("not found", status_code=404, media_type="text/plain")
        if not basic_auth_ok(
            request.headers.get("authorization", ""), self.settings.webhook_secret
        ):
            return Response(
                "unauthorized",
                status_code=401,
                media_type="text/plain",
                headers={"WWW-Authenticate": 'Basic realm="webhooks"'},
            )
        try:
            events = parse_webhook(provider, await request.body())
        except WebhookError as exc:
            return Response(f"bad payload: {exc}", status_code=400, media_type="text/plain")
        window = timedelta(days=self.settings.soft_bounce_window_days)
        done = await self.db(
            lambda store: apply_events(
                store, events, self.settings.soft_bounce_limit, soft_bounce_window=window
            )
        )
        return JSONResponse({"applied": done})

    # -- unsubscribe --------------------------------------------------------------------------

    async def unsubscribe(self, request: Request) -> Response:
        """GET shows one button and never unsubscribes. A POST whose whole body is
        ``List-Unsubscribe=One-Click`` (RFC 8058, as a form or bare) unsubscribes at once
        with no cookie; the page's own buttons carry a CSRF token."""
        token = request.path_params["token"]
        path = request.url.path
        if request.method == "GET":
            subscriber, _ = await self.db(self.read, "unsubscribe", token)
            if subscriber.status == Status.UNSUBSCRIBED:
                return self.render(request, self.unsubscribed_page(subscriber, path))
            return self.render(
                request,
                notice(
                    f"Unsubscribe from {self.brand}?",
                    f"Press the button and {subscriber.email} will get no more email from us.",
                    button=Button("Unsubscribe", path, {"action": "unsubscribe"}),
                ),
            )
        body = await request.body()
        form = await request.form(max_files=0, max_fields=64)
        if list(form.multi_items()) == ONE_CLICK or body.strip() == b"List-Unsubscribe=One-Click":
            action, via = "unsubscribe", "one-click"
        else:
            self.csrf.check(request, form)
            action, via = str(form.get("action")), "page"
        if action not in ("unsubscribe", "resubscribe"):
            raise HTTPException(400)

        def work(store: Store) -> tuple[Subscriber, str]:
            subscriber, _ = self.read(store, "unsubscribe", token)
            if action == "unsubscribe":
                subscriber = unsubscribe(store, subscriber, via=via)
            else:
                subscriber = resubscribe(store, subscriber)
            return subscriber, self.signer.path("preferences", subscriber)

        subscriber, preferences = await self.db(work)
        if action == "unsubscribe":
            return self.render(request, self.unsubscribed_page(subscriber, path))
        return self.render(
            request,
            notice(
                "Welcome back",
                f"{subscriber.email} is subscribed again; the next edition comes as before.",
                links=[("Open my preferences", preferences)],
            ),
        )

    def unsubscribed_page(self, subscriber: Subscriber, path: str) -> Page:
        return notice(
            "You are unsubscribed",
            f"{subscriber.email} will get no more email from {self.brand}.",
            "Changed your mind? You can come back at once.",
            button=Button("Resubscribe", path, {"action": "resubscribe"}),
        )

    # -- feedback -----------------------------------------------------------------------------

    async def feedback(self, request: Request) -> Response:
        """A "more like this" or "less like this" link of a paper card,
        ``/feedback/TOKEN?paper=ID&signal=more|less``: GET asks, POST records."""
        token = request.path_params["token"]
        paper_id = request.query_params.get("paper")
        signal = request.query_params.get("signal")
        posted = request.method == "POST"
        if posted:
            await self.form(request)

        def work(store: Store) -> tuple[Feedback, str]:
            feedback = read_feedback(store, self.settings, self.signer, token, paper_id, signal)
            if posted:
                store.set_feedback(feedback.subscriber.id, feedback.paper.id, feedback.value)
            return feedback, self.signer.path("preferences", feedback.subscriber)

        feedback, preferences = await self.db(work)
        more = feedback.value > 0
        title = f"“{one_line(feedback.paper.title)}”"
        if not posted:
            page = notice(
                "More papers like this?" if more else "Fewer papers like this?",
                f"Tell us you want {'more' if more else 'fewer'} papers like {title}.",
                button=Button(
                    "Yes, more like this" if more else "Yes, fewer like this",
                    feedback_url(request.url.path, feedback.paper.id, feedback.signal),
                ),
            )
        else:
            page = notice(
                "Thank you",
                f"Noted: your next editions will have {'more' if more else 'fewer'} papers "
                f"like {title}.",
                links=[("Open my preferences", preferences)],
            )
        return self.render(request, page)

    # -- the archive --------------------------------------------------------------------------

    @cached_property
    def email_renderer(self) -> Renderer:
        """Renders archived editions; made once, as its template is inlined once."""
        return Renderer(self.settings, self.signer)

    async def archive(self, request: Request) -> Response:
        """``/archive/TOKEN``, the "View in your browser" link of an email: that edition as
        it was sent, its recorded papers in the email's own HTML. The token names the reader
        and the edition; any other link is a bad link."""

        def work(store: Store) -> tuple[Subscriber, date, list[Pick] | None]:
            subscriber, data = self.read(store, "archive", request.path_params["token"])
            edition = parse_day(str(data.get("edition", "")))
            if edition is None:
                raise BadToken("this archive link is not valid")
            return subscriber, edition, sent_picks(store, subscriber, edition)

        subscriber, edition, picks = await self.db(work)
        if picks is None:
            page = notice(
                "Not sent yet",
                f"The edition of {edition:%B} {edition.day}, {edition.year} has not been sent "
                "to you (yet): this page shows an email once it is on its way.",
                status=404,
            )
            return self.render(request, page)
        html = self.email_renderer.render(subscriber, picks, edition).html
        return HTMLResponse(html, headers=ARCHIVE_HEADERS)

    # -- the rest -----------------------------------------------------------------------------

    async def stylesheet(self, request: Request) -> Response:
        return Response(
            self.css, media_type="text/css", headers={"cache-control": "public, max-age=3600"}
        )

    async def bad_link(self, request: Request, exc: Exception) -> Response:
        """Whatever is wrong with a link, the same page: no detail for whoever alters it."""
        return self.render(
            request,
            notice(
                "This link does not work",
                "It may be incomplete (some mail programs cut long links) or no longer valid: "
                f"a confirmation link works for {self.settings.pending_expiry_days} days. "
                "Try opening it again from the email, or sign up again.",
                status=400,
                links=[("Sign up", "/")],
            ),
        )

    async def csrf_failed(self, request: Request, exc: Exception) -> Response:
        return self.render(
            request,
            notice(
                "This form has expired",
                "For your safety a form works for a day, in the browser that opened it, "
                "with cookies allowed. Please open the page again and send the form again.",
                status=403,
                links=[("Open the page again", request.url.path)],
            ),
        )

    async def http_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        titles = {404: "Page not found", 405: "Page not found", 413: "Form too large"}
        text = {
            404: "There is no page at this address.",
            405: "There is no page at this address.",
            413: "This form is larger than any of ours.",
            500: "Something went wrong on our side. Please try again later.",
        }
        page = notice(
            titles.get(status, "Something went wrong"),
            text.get(status, "This request could not be handled."),
            status=status,
            links=[("Home", "/")],
        )
        return self.render(request, page)


def utc_today() -> date:
    """The day of the public trending list: the UTC date, as its window is in UTC days."""
    return datetime.now(UTC).date()


def _paper_item(pick: Pick) -> dict[str, object]:
    """A pick as the preferences page lists it: its record, and the paper's link."""
    return {**pick.to_dict(), "url": paper_url(pick.paper)}


def create_app(settings: Settings) -> Starlette:
    """The ASGI app. Refuses (SettingsError) a configuration that would send real mail
    without a signing key or a real From address."""
    web = WebApp(settings)
    return Starlette(
        routes=web.routes(),
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={
            BadToken: web.bad_link,
            CSRFError: web.csrf_failed,
            HTTPException: web.http_error,
            Exception: web.http_error,
        },
        lifespan=web.lifespan,
        max_body_size=MAX_BODY,
    )


def serve(settings: Settings, host: str, port: int) -> None:
    """Run the web app on uvicorn until interrupted. There is no access log: the paths
    carry the tokens of personal links (the reverse proxy's log can leave them out)."""
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        proxy_headers=True,
        server_header=False,
        access_log=False,
    )
