"""``orders-service``: the commands the container, the chart and ``make run`` call."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import NoReturn

import click

from service import cli_checks as checks
from service import devstack
from service.config import SETTINGS, Settings, SettingsError
from service.observability.logging import configure as configure_logging


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="orders-service")
def main() -> None:
    """Paginated orders from MySQL through an exact Redis cache.

    Configured by ORDERS_* environment variables (see `orders-service config`); in a checkout
    where `make run` is running, also by the .run/orders.env it writes (the environment wins).
    """
    devstack.load()


def prepare_metrics_dir(settings: Settings) -> str:
    """A clean prometheus-client multiprocess directory, named in the environment before anything
    imports the client. This is the one place it is emptied: before gunicorn starts, because the
    files of an earlier server's processes must be gone before this one's master writes its own
    (emptying it later, in the master, would delete the master's own gauge files)."""
    if settings.metrics_dir:
        from service.observability import multiproc

        path = settings.metrics_dir
        multiproc.prepare(path)
    else:  # a private directory: two servers on one machine never share or wipe each other's
        from service.observability import multiproc

        path = tempfile.mkdtemp(prefix="orders-metrics-")
        os.environ[multiproc.PRIVATE_ENV_VAR] = path
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


def _gunicorn_argv() -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        "python:service.gunicorn_conf",
        "service.wsgi:app",
    ]


@main.command()
def serve() -> NoReturn:
    """Serve the HTTP API with gunicorn (ORDERS_HOST:ORDERS_PORT, default 0.0.0.0:5001)."""
    settings = _settings()
    for port in filter(None, (settings.port, settings.admin_port)):
        checks.require_free(settings.host, port)
    checks.refuse_evicting_redis(settings)
    prepare_metrics_dir(settings)
    argv = _gunicorn_argv()
    os.execv(argv[0], argv)  # noqa: S606 - replaces this process: signals reach gunicorn directly


@main.command()
def migrate() -> None:
    """Apply the schema migrations that are missing (idempotent; safe from several replicas)."""
    from service.orders import schema
    from service.orders.database import connect

    settings = _settings()
    configure_logging(settings)
    click.echo(f"migrating {checks.target(settings)}", err=True)
    checks.wait_for_mysql(settings)
    checks.create_database_if_missing(settings)
    with connect(settings.database_url) as connection:
        try:
            applied = schema.migrate(connection)
        except schema.SchemaRefused as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")


@main.command()
@click.option(
    "--orders",
    "count",
    type=click.IntRange(min=0),
    default=100_000,
    show_default=True,
    help="How many orders to generate.",
)
@click.option(
    "--seed",
    "seed",
    type=int,
    default=42,
    show_default=True,
    help="Random seed; the same seed gives the same orders.",
)
@click.option("--if-empty", is_flag=True, help="Do nothing when the table already has orders.")
@click.option("--yes", is_flag=True, help="Add to a table that already has orders.")
def seed(count: int, seed: int, if_empty: bool, yes: bool) -> None:
    """Generate realistic orders after the highest existing id (deterministic for a seed)."""
    from service.orders import repository
    from service.orders import seed as generator
    from service.orders.database import connect

    settings = _settings()
    click.echo(f"seeding {count} orders into {checks.target(settings)}", err=True)
    with checks.clear_failures(settings):
        with connect(settings.database_url) as connection, connection.cursor() as cursor:
            present = repository.has_orders(cursor)
            first_id = repository.max_order_id(cursor) + 1
        if present and if_empty:
            click.echo("orders already present; not seeding")
            return
        if present and not yes:
            raise click.ClickException(
                f"{settings.database_url.redacted()} already has orders (up to id "
                f"{first_id - 1}); add to them with --yes, or use --if-empty"
            )
        rows = generator.generate(count, seed=seed, first_id=first_id)
        started = time.monotonic()
        with click.progressbar(
            length=count, label="seeding orders", file=sys.stderr, hidden=not sys.stderr.isatty()
        ) as bar:
            load = lambda: connect(settings.database_url, autocommit=False)  # noqa: E731
            generator.load(load, rows, bar.update)
    elapsed = time.monotonic() - started
    click.echo(f"seeded {count} orders in {elapsed:.1f} s ({count / max(elapsed, 1e-9):,.0f}/s)")


@main.command()
def recount() -> None:
    """Rebuild the per-block order counts (after loading rows while the triggers were missing),
    then invalidate every cached page and the totals, which were computed from the old counts."""
    from service.cache.keys import DROP, Invalidation
    from service.cache.store import CacheUnavailable
    from service.orders import repository
    from service.orders.database import connect
    from service.wiring import build_redis_cache

    settings = _settings()
    click.echo(f"recounting {checks.target(settings)}", err=True)
    with (
        checks.clear_failures(settings),
        connect(settings.database_url) as connection,
        connection.cursor() as cursor,
    ):
        repository.recount_buckets(cursor)
        total = repository.count_orders(cursor)
    click.echo(f"block counts rebuilt: {total} orders")
    try:
        build_redis_cache(settings).invalidate(Invalidation(from_page=1, totals=DROP))
    except CacheUnavailable as exc:
        raise click.ClickException(
            f"counts rebuilt, but the cache could not be cleared ({exc}); run recount again"
        ) from None
    click.echo("cached pages and totals invalidated")


@main.command()
def invalidate() -> None:
    """Follow the MySQL binlog and invalidate cached pages on every committed change."""
    from service.wiring import run_invalidator

    settings = _settings()
    checks.refuse_evicting_redis(settings)
    run_invalidator(settings)


@main.command()
def inspect() -> None:
    """Compare cached pages and totals with MySQL continuously; count confirmed inconsistencies."""
    from service.wiring import run_inspector

    settings = _settings()
    click.echo(f"inspecting {checks.target(settings)}", err=True)
    with checks.clear_failures(settings):
        run_inspector(settings)


@main.command("run-all")
def run_all() -> None:
    """Development: the web server, the invalidator and the inspector, stopped together."""
    settings = _settings()
    ports = [
        settings.port,
        settings.admin_port,
        settings.invalidator_metrics_port,
        settings.inspector_metrics_port,
    ]
    for port in filter(None, ports):
        checks.require_free(settings.host, port)
    children = [
        subprocess.Popen([sys.executable, "-m", "service.cli", "invalidate"]),
        subprocess.Popen([sys.executable, "-m", "service.cli", "inspect"]),
        subprocess.Popen([sys.executable, "-m", "service.cli", "serve"]),
    ]

    def stop(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while all(child.poll() is None for child in children):
        time.sleep(0.2)
    stop(signal.SIGTERM, None)
    codes = [child.wait() for child in children]
    sys.exit(max(codes))


@main.command()
@click.option("--url", help="The API's /metrics (default: 127.0.0.1 at the admin or API port).")
@click.option("--watch", is_flag=True, help="Print again every --interval seconds until Ctrl-C.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=2.0,
    show_default=True,
    help="Seconds between the two samples a rate needs.",
)
def stats(url: str | None, watch: bool, interval: float) -> None:
    """The status page's figures in a terminal: hit rate, requests/s, misses, lag, inspector."""
    from service.observability import status, status_sources

    settings = _settings()
    own = url or f"http://127.0.0.1:{settings.admin_port or settings.port}/metrics"
    sources = status_sources(settings)
    click.echo(f"reading {own} and {', '.join(sources)}", err=True)
    history = status.History(min_step=0.0)
    while True:
        try:
            own_text = status.fetch(own)
        except (OSError, ValueError) as exc:
            raise click.ClickException(
                f"{own} did not answer ({exc}); is the API running?"
            ) from None
        history.add(status.sample(own_text, sources))
        series = history.series()
        if series:
            if watch:
                click.clear()
            click.echo("\n".join(status.lines(history.samples[-1], series[-1][1])))
            if not watch:
                return
        time.sleep(interval)


@main.command()
@click.option("--markdown", is_flag=True, help="Print docs/configuration.md's table.")
def config(markdown: bool) -> None:
    """Print the effective settings (secrets redacted), or the table of every variable."""
    if markdown:
        click.echo("| Variable | Default | Meaning |\n| --- | --- | --- |")
        for setting in SETTINGS:
            default = f"`{setting.default}`" if setting.default else "(empty)"
            click.echo(f"| `{setting.env}` | {default} | {setting.help} |")
        return
    env_file = devstack.found()
    if env_file is not None:
        click.echo(f"# also read from {env_file} (the environment wins)", err=True)
    for name, value in _settings().redacted().items():
        click.echo(f"{name}={value}")


@main.command("load-functions")
@click.option("--print", "print_only", is_flag=True, help="Print the library instead.")
def load_functions(print_only: bool) -> None:
    """Load the cache's Redis function library (needs a Redis user allowed FUNCTION LOAD, such
    as the admin; the API and invalidator users are not). Idempotent; versions coexist."""
    from service.cache import store
    from service.cache.keys import LIBRARY

    if print_only:
        click.echo(LIBRARY.source, nl=False)
        return
    settings = _settings()
    client = store.redis_client(settings.redis_url, timeout=5)
    try:
        name = store.load_functions(client)
    except Exception as exc:  # noqa: BLE001 - one line, without what the server said
        raise click.ClickException(
            f"Redis at {settings.redis_url.redacted()}: {store.failure_reason(exc)}"
        ) from None
    finally:
        client.close()
    click.echo(f"functions loaded: {name}")


@main.command()
@click.argument("role", type=click.Choice(["api", "invalidator", "migrate", "replica"]))
@click.option("--user", required=True, help="The account the role logs in as.")
@click.option("--database", default="orders", show_default=True, help="The orders database.")
@click.option("--host", default="%", show_default=True, help="MySQL account host part.")
@click.option("--redis-prefix", help="Print the Redis ACL rules for this key prefix instead.")
@click.option(
    "--topology",
    type=click.Choice(["standalone", "sentinel", "cluster"]),
    default="standalone",
    show_default=True,
    help="With --redis-prefix: sentinel adds the rules of the Sentinels' user (a second line); "
    "cluster gives the grouped keys' rules (set them on every node).",
)
def grants(
    role: str, user: str, database: str, host: str, *, redis_prefix: str | None, topology: str
) -> None:
    """Print the MySQL GRANT statements (or Redis ACL rules) of a role (service/orders/roles.py);
    ``replica`` is the API's user on a read replica (MySQL only)."""
    from service.orders import roles

    try:
        if redis_prefix is not None:
            if topology == "sentinel":
                click.echo("# the Redis servers (primary and replicas alike): ACL SETUSER " + user)
            if topology == "cluster":
                click.echo(f"# every node of the cluster (ACLs are not shared): ACL SETUSER {user}")
            rules = roles.redis_acl(role, user, redis_prefix, cluster=topology == "cluster")
            click.echo(" ".join(rules))
            if topology == "sentinel":
                click.echo(f"# each Sentinel (ORDERS_REDIS_SENTINEL_PASSWORD): ACL SETUSER {user}")
                click.echo(" ".join(roles.sentinel_acl(user)))
            return
        for statement in roles.grants(role, user, database, host):
            click.echo(f"{statement};")
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


if __name__ == "__main__":
    main()
