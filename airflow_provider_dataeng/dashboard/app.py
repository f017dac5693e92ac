"""The dashboard's FastAPI app, mounted by the plugin at ``/dataeng`` in Airflow's API server.

Routes (all relative, so the app works under any ``[api] base_url`` and behind a proxy):

* ``dashboard/``                      the page (HTML); ``static/...`` its script, style and icon
* ``api/targets``                     every target the user may read: counts, one letter per interval, freshness
* ``api/target?conn_id&dag_id&schema&table``   one target: intervals, rows, drift bands, checks, freshness
* ``api/formation``                   the pg_auto_failover formation, when a monitor connection is configured
* ``api/dbt``                         the dbt docs sites the user may see, with a link per model and source
* ``dbt-docs/<site>/``                a dbt docs site (``index.html``, ``manifest.json``, ``catalog.json``)

Every route but ``static/`` requires Airflow's authentication (``Authorization: Bearer <JWT>`` or the UI's
``_token`` cookie): without it 401/403. Targets are filtered to the DAGs the auth manager lets the user read,
and a target's detail requires read access to its DAG. Filling holes is not proxied: the page calls
Airflow's own REST API (``/api/v2/backfills``, ``clearTaskInstances``) with the user's session, so Airflow
itself authorizes the backfill.
"""

from pathlib import Path
from typing import Any

STATIC_DIR = Path(__file__).resolve().parent / "static"


def create_app() -> Any:
    """Build the FastAPI app (imports Airflow's API server modules: call it in the API server only)."""
    import msgspec
    from airflow.api_fastapi.common.db.common import SessionDep
    from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
    from fastapi import Depends, FastAPI, HTTPException, Query, Request
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
    from fastapi.staticfiles import StaticFiles
    from starlette.middleware.gzip import GZipMiddleware

    from airflow_provider_dataeng.dashboard import airflow_side, dbt_docs, service
    from airflow_provider_dataeng.dashboard.settings import load_settings

    app = FastAPI(title="Data engineering ingestion dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    # The overview is ~80 kB of JSON for 50 targets x 1,000 intervals (one letter each): ~8 kB gzipped.
    app.add_middleware(GZipMiddleware, minimum_size=1024, compresslevel=5)

    def json_response(body: Any) -> Response:
        """Encoded by msgspec (no FastAPI response-model validation of a large dict)."""
        return Response(msgspec.json.encode(body), media_type="application/json",
                        headers={"Cache-Control": "no-store"})

    @app.exception_handler(HTTPException)
    async def _auth_errors(request: Request, exc: HTTPException) -> Any:
        path = request.url.path
        page = path.rstrip("/").endswith("/dashboard") or ("/dbt-docs/" in path and path.endswith(("/", ".html")))
        if page and exc.status_code in (401, 403):
            return HTMLResponse(_signin_page(request, exc.status_code), status_code=exc.status_code)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.get("/dashboard", include_in_schema=False)
    def _dashboard_slash() -> RedirectResponse:
        return RedirectResponse("dashboard/", status_code=307)

    html = page_html()

    @app.get("/dashboard/", response_class=HTMLResponse)
    def dashboard_page(user: GetUserDep, session: SessionDep) -> HTMLResponse:
        # The overview travels inside the page: the first render needs one request, not two.
        try:
            overview = service.overview(load_settings(), airflow_side.readable_dag_ids(user), session)
        except Exception:  # the page's own request shows the error
            overview = None
        return HTMLResponse(html.replace(BOOT_PLACEHOLDER, boot_json(overview)), headers={"Cache-Control": "no-store"})

    @app.get("/api/targets")
    def targets(user: GetUserDep, session: SessionDep, limit: int | None = Query(None, ge=1)) -> Response:
        settings = load_settings()
        return json_response(service.overview(settings, airflow_side.readable_dag_ids(user), session, limit))

    @app.get("/api/target", dependencies=[Depends(requires_access_dag(method="GET"))])
    def target(
        user: GetUserDep,
        session: SessionDep,
        conn_id: str = Query(..., min_length=1),
        dag_id: str = Query(..., min_length=1),
        schema: str = Query(..., min_length=1),
        table: str = Query(..., min_length=1),
        limit: int | None = Query(None, ge=1),
    ) -> Response:
        found = service.detail(load_settings(), conn_id, dag_id, schema, table, session, limit,
                               airflow_side.readable_dag_ids(user))
        if found is None:
            raise HTTPException(404, f"no ledger rows for {schema}.{table} of DAG {dag_id} in {conn_id}")
        return json_response(found)

    def readable_site(user: Any, site_id: str) -> Any:
        site = dbt_docs.find_sites(load_settings().dbt_docs_dirs, airflow_side.readable_dag_ids(user)).get(site_id)
        if site is None:
            raise HTTPException(404, f"no dbt docs site {site_id!r} that you may read")
        return site

    @app.get("/api/dbt")
    def dbt_sites(user: GetUserDep) -> Response:
        sites = dbt_docs.find_sites(load_settings().dbt_docs_dirs, airflow_side.readable_dag_ids(user))
        return json_response({"sites": dbt_docs.sites_json(sites)})

    @app.get("/dbt-docs/{site_id}", include_in_schema=False)
    def _dbt_docs_slash(site_id: str, user: GetUserDep) -> RedirectResponse:
        return RedirectResponse(f"{site_id}/", status_code=307)

    @app.get("/dbt-docs/{site_id}/{name}")
    @app.get("/dbt-docs/{site_id}/")
    def dbt_docs_file(site_id: str, user: GetUserDep, name: str = "index.html") -> FileResponse:
        path = dbt_docs.site_file(readable_site(user, site_id), name)
        if path is None:
            raise HTTPException(404, f"{name!r} is not a file of dbt docs site {site_id!r}")
        return FileResponse(path, headers={"Cache-Control": "no-cache"})

    @app.get("/api/formation")
    def formation(user: GetUserDep) -> dict[str, Any]:
        return service.formation(load_settings())

    return app


BOOT_PLACEHOLDER = '<script id="boot" type="application/json">null</script>'


def boot_json(data: Any) -> str:
    """``data`` as a JSON script element; ``<`` escaped so no text in it can end the element."""
    import msgspec

    text = msgspec.json.encode(data).decode().replace("<", "\\u003c")
    return f'<script id="boot" type="application/json">{text}</script>'


def page_html() -> str:
    """index.html with its stylesheet and script inlined: one request for the page, one for its data."""
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    css = (STATIC_DIR / "dashboard.css").read_text(encoding="utf-8")
    js = (STATIC_DIR / "dashboard.js").read_text(encoding="utf-8")
    html = html.replace('<link rel="stylesheet" href="../static/dashboard.css">', f"<style>\n{css}</style>")
    return html.replace('<script src="../static/dashboard.js"></script>', f"<script>\n{js}</script>")


def _signin_page(request: Any, status: int) -> str:
    from html import escape

    try:
        from airflow.api_fastapi.app import get_auth_manager

        login = get_auth_manager().get_url_login(next_url=str(request.url))
    except Exception:
        login = "../../auth/login"
    return (
        "<!doctype html><meta charset=utf-8><title>Sign in</title>"
        f"<p>Not signed in to Airflow ({status}). <a href=\"{escape(login)}\">Sign in</a> and come back.</p>"
    )


class LazyApp:
    """An ASGI app that builds :func:`create_app` on its first request.

    The plugin is imported by every Airflow component (scheduler, workers); only the API server serves it,
    so the FastAPI app and Airflow's API modules are imported there alone.
    """

    def __init__(self) -> None:
        self._app: Any = None

    def _get(self) -> Any:
        if self._app is None:
            self._app = create_app()
        return self._app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self._get()(scope, receive, send)

    def __repr__(self) -> str:
        return f"{__name__}.LazyApp()"
