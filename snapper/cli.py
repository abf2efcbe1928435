"""The typer CLI: parse -> one library call -> render. The only module that prints or exits."""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import typer.core

from snapper import __version__
from snapper.errors import SnapperError, UsageError


class _OneLineErrors(typer.core.TyperGroup):
    """Argument parsing errors (a missing argument, an unknown option or command, a bad option value) as one
    line like every other error: ``snapper: error: <command>: <problem> (see '<command> --help')``, exit 2.
    Typer raises its own (vendored) click exceptions: they are recognised by what they have, a
    ``format_message()`` and an ``exit_code``, not by class."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, windows_expand_args: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except Exception as e:
            fmt, code = getattr(e, "format_message", None), getattr(e, "exit_code", None)
            if type(e).__name__ == "Abort":
                print("snapper: interrupted", file=sys.stderr)
                sys.exit(130)
            if not callable(fmt) or not isinstance(code, int):
                raise
            if type(e).__name__ == "NoArgsIsHelpError":  # `snapper` alone: the help
                print(fmt())
                sys.exit(0)
            ctx = getattr(e, "ctx", None)
            cmd = getattr(ctx, "command_path", None) or "snapper"
            message = " ".join(str(fmt()).split()).rstrip(".")
            print(f"snapper: error: {cmd}: {message} (see '{cmd} --help')", file=sys.stderr)
            sys.exit(code)
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    name="snapper",
    cls=_OneLineErrors,
    help="Forensic snapshots of Docker overlay2 storage: collect, find leaked layer dirs, diff over time.",
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    invoke_without_command=True,
)

_STATE: dict[str, bool] = {"debug": False}
T = TypeVar("T")

FormatOpt = Annotated[str, typer.Option("--format", "-f", help="table | json | csv")]
GraceOpt = Annotated[str, typer.Option("--grace", help="dirs younger than this are in-flight while the daemon "
                                       "runs (e.g. 0, 15m, 1h)")]


def _fail(e: SnapperError) -> None:
    if _STATE["debug"]:
        traceback.print_exc()
    print(f"snapper: error: {e.line()}", file=sys.stderr)
    raise typer.Exit(e.exit_code)


def _run(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except SnapperError as e:
        _fail(e)
    except KeyboardInterrupt:
        print("snapper: interrupted", file=sys.stderr)
        raise typer.Exit(130) from None
    except (typer.Exit, SystemExit):
        raise
    except Exception as e:  # a bug: still one line, the traceback only with --debug
        if _STATE["debug"]:
            traceback.print_exc()
        print(f"snapper: error: internal error: {type(e).__name__}: {e} (rerun with --debug and report it)",
              file=sys.stderr)
        raise typer.Exit(1) from None
    raise AssertionError("unreachable")


def _check_format(fmt: str, allowed: tuple[str, ...] = ("table", "json", "csv")) -> None:
    if fmt not in allowed:
        _fail(UsageError(f"--format {fmt}", "unknown format", f"use one of {', '.join(allowed)}"))


@app.callback()
def main_options(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="show tracebacks for errors")] = False,
    version: Annotated[bool, typer.Option("--version", help="print the version and exit")] = False,
) -> None:
    """snapper: see what leaked under /var/lib/docker/overlay2, when, from what, and why."""
    _STATE["debug"] = debug
    if version:
        print(f"snapper {__version__}")
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        print(ctx.get_help())
        raise typer.Exit(0)


class _RichProgress:
    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.files = 0
        self.bytes = 0
        self.p = Progress(TextColumn("walking overlay2"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), transient=True)
        self.task: Any = None

    def start(self, total_layers: int) -> None:
        self.p.start()
        self.task = self.p.add_task("walk", total=total_layers, stats="")

    def advance(self, files: int, nbytes: int) -> None:
        from snapper.render import human_bytes

        self.files += files
        self.bytes += nbytes
        self.p.update(self.task, advance=1, stats=f"{self.files:,} files {human_bytes(self.bytes)}")

    def stop(self) -> None:
        self.p.stop()


@app.command()
def collect(
    root: Annotated[str | None, typer.Option(help="Docker data root (default: daemon.json data-root, "
                                             "else /var/lib/docker)")] = None,
    out: Annotated[str | None, typer.Option(help="snapshot dir to create (must not exist); default "
                                            "snapshots/<host>/<UTC time>")] = None,
    hash: Annotated[str, typer.Option("--hash", help="content hashes: none | partial | full")] = "none",
    jobs: Annotated[int, typer.Option(min=0, help="parallel walk processes (0 = 2 per core, at most 6)")] = 0,
    no_api: Annotated[bool, typer.Option("--no-api", help="do not ask the engine API")] = False,
    socket: Annotated[str | None, typer.Option(help="engine API socket (default: from the dockerd "
                                               "command line)")] = None,
    series: Annotated[str, typer.Option(help="where default snapshot paths go")] = "snapshots",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress, no summary")] = False,
    base: Annotated[str | None, typer.Option(help="reuse unchanged committed layers from this snapshot "
                                             "(default: the newest earlier one of the data root in "
                                             "SERIES/<host>)")] = None,
    no_base: Annotated[bool, typer.Option("--no-base", help="walk every layer dir")] = False,
    no_nice: Annotated[bool, typer.Option("--no-nice", help="run at normal CPU and I/O priority "
                                          "(default: nice 19, idle I/O class)")] = False,
    metrics: Annotated[Path | None, typer.Option("--metrics", help="also write Prometheus textfile metrics "
                                                 "of the new snapshot to this file (atomically)")] = None,
    grace: GraceOpt = "1h",
    containerd_root: Annotated[list[str] | None, typer.Option(
        "--containerd-root", help="also collect this containerd root (its meta.db, snapshots and content); "
        "repeatable. With --root pointing at a containerd root, no dockerd data root is needed")] = None,
    push: Annotated[str | None, typer.Option("--push", help="then push the new snapshot into this lake (a local "
                                             "path or s3://bucket/prefix), as `snapper lake push` does")] = None,
    files: Annotated[bool, typer.Option("--files", help="with --push: also push the full files table")] = False,
    s3_endpoint: Annotated[str | None, typer.Option("--s3-endpoint", help="with --push: S3-compatible endpoint "
                                                    "(default: $AWS_ENDPOINT_URL)")] = None,
) -> None:
    """Snapshot overlay2/ and the containerd stores (files, meta.db, content) plus Docker's metadata into Parquet
    (read-only).

    \b
    Examples:
      sudo snapper collect
      sudo snapper collect --root /srv/docker --out /var/tmp/snap1 --hash partial
      sudo snapper collect --no-base --no-nice      (a full walk at normal priority)
      sudo snapper collect -q --metrics /var/lib/node_exporter/textfile/snapper.prom   (hourly from cron)
      sudo snapper collect -q --push s3://fleet/snapper      (collect, then push to the fleet lake)
    """
    # Arrow's C++ default pool (mimalloc) keeps freed pages per thread: malloc gives them back. Read once,
    # when pyarrow first allocates, so it must be set before snapper.collect imports pyarrow.
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    from snapper.collect import CollectOptions
    from snapper.collect import collect as do_collect

    opts = CollectOptions(root=root, out=out, hash_mode=hash, jobs=jobs, api=not no_api, socket=socket,
                          series_dir=series, base=base, use_base=not no_base, nice=not no_nice,
                          containerd_roots=tuple(containerd_root or ()))
    from snapper import verdict

    grace_s = _run(lambda: verdict.parse_duration(grace))
    if (files or s3_endpoint) and not push:
        _fail(UsageError("--files/--s3-endpoint", "only used with --push", "add --push URL or drop them"))
    from snapper import lake

    target = _run(lambda: lake.open_lake(push, s3_endpoint)) if push else None  # a bad URL fails before the walk
    prog = _RichProgress() if (sys.stderr.isatty() and not quiet) else None
    try:
        res = _run(lambda: do_collect(opts, prog))
    finally:
        if prog is not None:
            prog.stop()
    from snapper.nwalk import fallback_reason

    if (why := fallback_reason()) is not None:  # once, after the collect (an error stays the only line)
        print(f"note: {why}", file=sys.stderr)
    if metrics is not None:
        from snapper import metrics as metrics_mod

        _run(lambda: metrics_mod.write(res.path, metrics, grace_s))
    if quiet:
        print(res.path)
    else:
        _print_collected(res.path, res.manifest)
    if target is not None:
        pushed = _run(lambda: lake.push_collected(target, res.path, files))
        if not quiet:
            _print_push(pushed)


def _print_collected(path: Path, m: dict[str, Any]) -> None:
    from snapper.render import human_bytes

    rows = m.get("rows", {})
    for note in m.get("layout", {}).get("notes", []):
        print(f"note: {note}", file=sys.stderr)
    daemon = m["daemon"]
    if daemon["state_changed"]:
        print("warning: the daemon changed the store during the collect "
              f"({daemon['changes'] or 'daemon started or stopped'}); results are advisory", file=sys.stderr)
    print(f"snapshot {path}")
    print(f"  data root {m['data_root']} ({m['data_root_source']}), daemon "
          f"{'running' if daemon['running'] else 'not running'}, api {m['api_status']}")
    print(f"  {m['overlay2_entries']} overlay2 entries, {rows.get('files', 0):,} files, "
          f"{rows.get('layerdb', 0)} layerdb chains, {rows.get('images', 0)} images, "
          f"{rows.get('containers', 0)} containers, {m['errors']} errors, {m['durations']['total_s']} s")
    if m.get("containerd_stores"):
        print(f"  containerd {', '.join(m['containerd_stores'])}: {rows.get('ctr_dirs', 0)} snapshot dirs and "
              f"blobs, {rows.get('ctr_objects', 0)} meta.db objects")
    inc = m.get("incremental") or {}
    if inc.get("base"):
        print(f"  reused {inc['reused_layers']} unchanged committed dirs ({inc['reused_rows']:,} rows) from "
              f"{inc['base']}, walked {inc['walked_layers']}")
    used = m["statvfs"]["used_bytes"]
    print(f"  filesystem used {human_bytes(used)}")


@app.command()
def show(
    snapshot: Annotated[Path, typer.Argument(help="snapshot directory")],
    format: FormatOpt = "table",
) -> None:
    """Print a snapshot's manifest and row counts.

    \b
    Examples:
      snapper show snapshots/host/20261128T000000Z
      snapper show SNAP --format json | jq .rows
    """
    from snapper.render import render_json, render_table
    from snapper.snapshot import manifest_rows, open_snapshot

    _check_format(format)
    snap = _run(lambda: open_snapshot(snapshot))
    m = snap.manifest
    if format == "json":
        render_json(m)
        return
    if format == "csv":
        import pyarrow as pa

        kv = manifest_rows(m)
        render_table(pa.table({"key": [k for k, _ in kv], "value": [v for _, v in kv]}), "csv")
        return
    daemon = m.get("daemon") or {}
    fields = {"snapshot": snap.path, **{k: m.get(k) for k in ("host", "data_root", "started_utc", "finished_utc",
                                                               "tool_version")},
              "schema_version": ".".join(str(m[k]) for k in ("schema_version", "schema_minor") if k in m),
              "api_status": m.get("api_status"),
              "daemon": ("running" if daemon.get("running") else "stopped")
              + (" (state changed during collect)" if daemon.get("state_changed") else ""),
              "driver": ((m.get("layout") or {}).get("active_driver") or "none")
              + (" (not classified by snapper)" if snap.unclassified_driver else ""),
              "engine": (m.get("engine") or {}).get("engine_version") or "unknown",
              "options": json.dumps(m.get("options"), sort_keys=True)}
    width = max(map(len, fields)) + 2
    for key, value in fields.items():
        print(f"{key:<{width}}{value}")
    rows = m.get("rows", {})
    print("rows:")
    name_w = max(map(len, rows), default=0) + 2
    count_w = max((len(f"{n:,}") for n in rows.values()), default=0)
    for name, n in rows.items():
        print(f"  {name:<{name_w}}{n:>{count_w},}")



@app.command()
def leaks(
    snapshot: Annotated[Path, typer.Argument(help="snapshot directory")],
    min_bytes: Annotated[int, typer.Option("--min-bytes", min=0, help="hide leaked dirs smaller than this")] = 0,
    grace: GraceOpt = "1h",
    format: FormatOpt = "table",
    fail_on_leak: Annotated[int | None, typer.Option("--fail-on-leak", min=0, help="exit 3 when leaked bytes exceed "
                                                     "this (a CI gate)")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="whole evidence, wrapped (default: one line "
                                          "each)")] = False,
    events: Annotated[Path | None, typer.Option("--events", help="the --out dir of `snapper watch` (default: the "
                                                "snapshot's parent dir when it holds events/): adds a cause per leak")]
    = None,
) -> None:
    """Leaked overlay2 dirs and containerd snapshots/blobs (unreachable from every live root) with mechanism
    and evidence.

    \b
    Examples:
      snapper leaks SNAP
      snapper leaks SNAP --min-bytes 100000000 --format json | jq '.[].layer_id'
      snapper leaks SNAP --fail-on-leak 10000000000   # exit 3 above 10 GB
      snapper leaks SNAP --events /var/lib/snapper     # which crash and operation left each
    """
    from snapper import cause, verdict
    from snapper.render import human_bytes, render_table

    _check_format(format)
    grace_s = _run(lambda: verdict.parse_duration(grace))
    rep = _run(lambda: verdict.report(snapshot, min_bytes, grace_s))
    cols = list(verdict.LEAK_COLUMNS)
    if set(rep.leaks.column("store").to_pylist()) - {"overlay2"}:
        cols.insert(0, "store")  # containerd snapshot ids and digests: say which store they belong to
    with_cause = events is not None or cause.events_dir_for(snapshot, None) is not None
    table = _run(lambda: cause.with_causes(rep.leaks.select(cols), snapshot, events)) if with_cause \
        else rep.leaks.select(cols)
    if format != "table":
        render_table(table, format)
    else:
        from snapper.render import render_notes

        shown, evidence = verdict.leaks_for_terminal(table)
        render_table(shown, "table", title=f"leaked dirs and blobs ({table.num_rows}; ids shortened like "
                     "docker: `snapper explain SNAP ID` takes a unique prefix)", byte_columns=("bytes",),
                     no_wrap=("mechanism", "heals", "created"))
        if evidence:
            render_notes(evidence, title="evidence" + ("" if verbose else " (one line each; --verbose for all "
                                                      "of it)"), full=verbose)
        if with_cause and table.num_rows:
            render_notes(cause.cause_notes(table, [e[0] for e in evidence]),
                         title="cause (which daemon loss and operation left it; --format json for the evidence)")
        if rep.metadata.num_rows:
            meta, details = verdict.metadata_for_terminal(rep.metadata)
            render_table(meta, "table", title="leaked metadata (holds no dir of its own)")
            render_notes(details, title="details", full=verbose)
        render_table(rep.reconciliation, "table", title="reconciliation", byte_columns=("bytes",))
        if rep.known_bugs.num_rows:
            render_notes(verdict.known_bugs_notes(rep.known_bugs),
                         title="known engine bugs that leak like this (`snapper query known_bugs SNAP`)", full=verbose)
    total = sum(b or 0 for b in rep.leaks.column("bytes").to_pylist())
    if fail_on_leak is not None and total > fail_on_leak:
        print(f"snapper: leaked {human_bytes(total)} > --fail-on-leak {human_bytes(fail_on_leak)}", file=sys.stderr)
        raise typer.Exit(3)


@app.command()
def explain(
    snapshot: Annotated[Path, typer.Argument(help="snapshot directory")],
    dir: Annotated[str, typer.Argument(help="overlay2 dir name, or a unique prefix of it")],
    grace: GraceOpt = "1h",
    format: FormatOpt = "table",
    events: Annotated[Path | None, typer.Option("--events", help="the --out dir of `snapper watch` (default: the "
                                                "snapshot's parent dir when it holds events/)")] = None,
) -> None:
    """Why DIR is live (the references from a root) or not (mechanism, evidence, timestamps, and its cause).

    \b
    Examples:
      snapper explain SNAP 633b1958       (a unique prefix, as `snapper leaks` shows it)
      snapper explain SNAP 633b1958d2c4 --format json
    """
    from snapper import cause, verdict
    from snapper.render import render_table

    _check_format(format)
    grace_s = _run(lambda: verdict.parse_duration(grace))
    table = _run(lambda: verdict.explain(snapshot, dir.strip().rstrip("/").rsplit("/", 1)[-1], grace_s))
    table = _run(lambda: cause.explain_rows(snapshot, table, events, grace_s))
    if format == "table":  # one line a section, long details wrapped under their own column
        from snapper.render import render_notes

        render_notes([(r["section"], r["detail"] or "") for r in table.to_pylist()], full=True)
    else:
        render_table(table, format)


@app.command()
def watch(
    socket: Annotated[str, typer.Option("--socket", help="the engine API socket")] = "/var/run/docker.sock",
    out: Annotated[Path, typer.Option("--out", help="writes OUT/events/*.parquet")] = Path("."),
    pidfile: Annotated[str, typer.Option("--pidfile", help="dockerd's pid file (removed at a clean stop)")]
    = "/var/run/docker.pid",
    poll: Annotated[float, typer.Option("--poll", help="seconds between looks at the daemon and clients")] = 0.5,
    flush: Annotated[float, typer.Option("--flush", help="seconds between writes (at most 10)")] = 10.0,
) -> None:
    """Record the daemon's starts and losses (clean stop or death), its event stream and the docker commands in
    flight, for `snapper leaks --events`. Runs until SIGTERM/SIGINT; changes nothing on the engine.

    \b
    Examples:
      snapper watch --out /var/lib/snapper
      snapper watch --socket /run/user/1000/docker.sock --pidfile /run/user/1000/docker.pid --out ~/snapper
    """
    from snapper import watch as recorder

    _run(lambda: recorder.watch(socket, out, pidfile, poll, flush))


def _table_or_none(t: Any, title: str, fmt: str, byte_columns: tuple[str, ...] = ()) -> None:
    from snapper.render import render_table

    if t.num_rows:
        render_table(t, fmt, title=title, byte_columns=byte_columns)


@app.command()
def diff(
    old: Annotated[Path, typer.Argument(help="older snapshot directory")],
    new: Annotated[Path, typer.Argument(help="newer snapshot directory")],
    layer: Annotated[str | None, typer.Option("--layer", help="per-file diff of one overlay2 dir")] = None,
    grace: GraceOpt = "1h",
    format: FormatOpt = "table",
    exit_code: Annotated[bool, typer.Option("--exit-code", help="exit 3 when newly leaked bytes > 0")] = False,
    force: Annotated[bool, typer.Option("--force", help="compare snapshots of different hosts or data "
                                        "roots")] = False,
) -> None:
    """What changed between two snapshots: dirs appeared, vanished, changed; newly leaked; leaks gone.

    \b
    Examples:
      snapper diff snapshots/h/20261127T230000Z snapshots/h/20261128T000000Z
      snapper diff OLD NEW --format json | jq '.newly_leaked[].layer_id'
      snapper diff OLD NEW --layer 3f2a9c      # files added/removed/modified in one dir
      snapper diff OLD NEW --exit-code         # CI gate: exit 3 if anything new leaked
    """
    from snapper import series, verdict
    from snapper.render import render_json, render_table, rows_of

    _check_format(format)
    grace_s = _run(lambda: verdict.parse_duration(grace))
    o, n, swapped = _run(lambda: series.pair(old, new, force))
    if swapped:
        print(f"note: {old} was collected after {new}: showing the changes from {o.path} to {n.path}",
              file=sys.stderr)
    if layer:
        render_table(_run(lambda: series.diff_files(o, n, layer, force)), format,
                     title=f"files of {layer} ({o.path.name} -> {n.path.name})", byte_columns=("size_delta",))
        return
    d = _run(lambda: series.diff(o, n, grace_s, force))
    cols = ["layer_id", "bytes", "bytes_delta", "files_added", "files_removed", "files_modified", "old_verdict",
            "new_verdict", "new_mechanism"]
    sections = {"appeared": d.appeared, "vanished": d.vanished, "changed": d.changed,
                "newly_leaked": d.newly_leaked, "leaks_gone": d.leaks_gone, "live_growth": d.live_growth}
    totals = d.totals()
    if format == "json":
        render_json({"old": str(d.old.path), "new": str(d.new.path), "totals": totals,
                     **{k: rows_of(v.select(cols)) for k, v in sections.items()},
                     "containerd": rows_of(d.containerd)})
    elif format == "csv":
        import pyarrow as pa

        render_table(d.dirs.select(["change", *cols, "newly_leaked", "leak_gone"]).cast(
            pa.schema([d.dirs.schema.field(c) for c in ["change", *cols, "newly_leaked", "leak_gone"]])), "csv")
    else:
        for name, t in sections.items():
            _table_or_none(t.select(cols), f"{name.replace('_', ' ')} ({t.num_rows})", "table",
                           ("bytes", "bytes_delta"))
        import pyarrow.compute as pc

        moved = d.containerd.filter(pc.not_equal(d.containerd["change"], "unchanged")) if d.containerd.num_rows \
            else d.containerd
        _table_or_none(moved, f"containerd: snapshot dirs, blobs and ingests that changed ({moved.num_rows})",
                       "table", ("bytes", "bytes_delta"))
        print("totals: " + ", ".join(f"{k}={v:,}" for k, v in totals.items()))
    if exit_code and totals["newly_leaked_bytes"] + totals["containerd_newly_leaked_bytes"] > 0:
        raise typer.Exit(3)


HISTORY_SECTIONS = ("dirs", "never_reachable", "timeline", "rate", "attribution", "duplicates", "prefixes",
                    "neighbours", "containerd", "restarts", "causes")


@app.command()
def history(
    snapshots: Annotated[list[Path], typer.Argument(help="snapshot dirs, or a series dir holding them")],
    grace: GraceOpt = "1h",
    window: Annotated[str, typer.Option("--window", help="neighbours created within this of a leaked dir")] = "5m",
    format: FormatOpt = "table",
    section: Annotated[str, typer.Option("--section", help="the one table --format csv prints: "
                                         + " | ".join(HISTORY_SECTIONS))] = "dirs",
) -> None:
    """A series over time: dirs that appeared and never became reachable, leak rate, fill forecast,
    attribution of leaked content, duplicates and top leaked paths.

    --format json holds every section; --format csv one table (a CSV has one header): --section.

    \b
    Examples:
      snapper history snapshots/myhost
      snapper history snapshots/myhost --grace 2h --format json | jq '.never_reachable'
      snapper history snapshots/myhost --format csv --section timeline > timeline.csv
    """
    from snapper import series, verdict
    from snapper.render import render_json, render_table, rows_of

    _check_format(format)
    if section not in HISTORY_SECTIONS:
        _fail(UsageError(f"--section {section}", "unknown section", f"use one of {', '.join(HISTORY_SECTIONS)}"))
    grace_s = _run(lambda: verdict.parse_duration(grace))
    window_s = _run(lambda: verdict.parse_duration(window))
    h = _run(lambda: series.history([str(p) for p in snapshots], grace_s, window_s))
    nr_cols = ["layer_id", "first_seen", "last_seen", "snapshots_present", "bytes", "files", "last_mechanism",
               "present_at_end"]
    attribution = {r["layer_id"]: r for r in rows_of(h.attribution)}
    never = rows_of(h.never_reachable.select(nr_cols))
    for r in never:
        a = attribution.get(r["layer_id"])
        r["attribution"] = a["source"] if a else None
        r["path_overlap_pct"] = a["path_overlap_pct"] if a else None
    doc = {"snapshots": rows_of(h.timeline), "rate": h.rate, "never_reachable": never,
           "dirs": rows_of(h.dirs.drop_columns(["first_seen_ns", "last_seen_ns"])),
           "attribution": rows_of(h.attribution), "duplicates": rows_of(h.duplicates),
           "prefixes": rows_of(h.prefixes), "neighbours": rows_of(h.neighbours), "containerd": rows_of(h.containerd),
           "restarts": rows_of(h.restarts), "causes": rows_of(h.causes) if h.causes is not None else None}
    if format == "json":
        render_json(doc)
        return
    if format == "csv":
        import pyarrow as pa

        tables = {"dirs": h.dirs, "timeline": h.timeline, "attribution": h.attribution, "duplicates": h.duplicates,
                  "prefixes": h.prefixes, "neighbours": h.neighbours, "containerd": h.containerd,
                  "restarts": h.restarts, **({"causes": h.causes} if h.causes is not None else {})}
        chosen = tables.get(section)
        if chosen is None and section == "causes":  # no snapper watch rows beside the series
            chosen = pa.table({"interrupted_at": pa.array([], pa.string())})
        if chosen is None:  # never_reachable and rate are built here, not tables of their own
            rows = never if section == "never_reachable" else [h.rate]
            chosen = pa.Table.from_pylist(rows) if rows else pa.table({c: pa.array([], pa.string()) for c in nr_cols})
        render_table(chosen, "csv")
        return
    render_table(h.timeline.drop_columns(["started_ns"]), "table", title=f"{len(h.snapshots)} snapshots",
                 byte_columns=("fs_used_bytes", "fs_total_bytes", "overlay2_bytes", "live_bytes", "leaked_bytes",
                               "in_flight_bytes", "unknown_bytes"))
    import pyarrow as pa

    _table_or_none(pa.Table.from_pylist(never) if never else pa.table({}),
                   f"appeared and never became reachable ({len(never)})", "table", ("bytes",))
    if any(h.restarts.column("restarted_since_previous").to_pylist()):
        render_table(h.restarts.select(["snap", "collected_utc", "daemon_started_utc", "pids", "note"]), "table",
                     title="daemon restarts between snapshots (best effort: the start before each collect)")
    if h.causes is not None:
        _table_or_none(h.causes, "leaked bytes of the last snapshot by cause (snapper watch)", "table", ("bytes",))
    rate = h.rate
    if rate.get("leaked_bytes_per_hour") is not None:
        from snapper.render import human_bytes

        print(f"leak rate {human_bytes(rate['leaked_bytes_per_hour'])}/h, "
              f"{human_bytes(rate['leaked_bytes_per_day'])}/day over {rate['span_hours']} h; "
              + series.fill_forecast(rate)[1])
    else:
        print("leak rate: needs two snapshots at different times")
    _table_or_none(h.attribution.select(["layer_id", "bytes", "mechanism", "source", "path_overlap_pct",
                                         "content_overlap_pct"]), "attribution of leaked dirs", "table", ("bytes",))
    _table_or_none(h.duplicates.drop_columns(["fingerprint"]), "duplicate content", "table",
                   ("bytes_each", "wasted_bytes"))
    _table_or_none(h.prefixes.slice(0, 15), "top leaked path prefixes", "table", ("bytes",))
    ctr_never = h.containerd.filter(h.containerd["never_reachable"]) if h.containerd.num_rows else h.containerd
    _table_or_none(ctr_never.select(["store", "kind", "name", "first_seen", "last_seen", "snapshots_present", "bytes",
                                     "last_mechanism", "self_heal", "present_at_end"]) if ctr_never.num_rows
                   else ctr_never, f"containerd: appeared and never became reachable ({ctr_never.num_rows})", "table",
                   ("bytes",))


@app.command()
def report(
    snapshots: Annotated[list[Path], typer.Argument(help="snapshot dirs, or a series dir holding them")],
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write (replaced atomically)")],
    grace: GraceOpt = "1h",
) -> None:
    """One self-contained HTML page (inline SVG charts, no network): disk use over time by verdict, leaked
    bytes by mechanism, leak rate and fill forecast, never-reachable dirs, top leaks with evidence and
    attribution, leaked metadata, duplicates, top path prefixes and `explain` of the biggest leak.

    \b
    Examples:
      snapper report snapshots/myhost -o report.html
      snapper report SNAP -o /tmp/leaks.html --grace 0
    """
    from snapper import verdict
    from snapper.report import write_report

    grace_s = _run(lambda: verdict.parse_duration(grace))
    path = _run(lambda: write_report([str(p) for p in snapshots], out, grace_s))
    print(path)


def _bind_args(snapshots: list[Path]) -> Any:
    """Snapshots for the commands that read raw tables (query, views, sql): an unclassified driver is named."""
    from snapper.snapshot import find_snapshots

    snaps = _run(lambda: find_snapshots([str(p) for p in snapshots]))
    for s in snaps:
        message = s.driver_message()
        if message:
            print(f"warning: {s.path}: {message}", file=sys.stderr)
    return snaps


@app.command()
def query(
    name: Annotated[str | None, typer.Argument(help="query name (see --list)")] = None,
    snapshots: Annotated[list[Path] | None, typer.Argument(help="snapshot dirs or a series dir")] = None,
    list_: Annotated[bool, typer.Option("--list", help="list the queries: name, description, why, params")] = False,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="k=v (repeatable)")] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="table | json | csv | parquet")] = "table",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="file for --format parquet")] = None,
) -> None:
    """Run one query of queries/ on snapshots, or list them.

    \b
    Examples:
      snapper query --list
      snapper query leaks SNAP --param min_bytes=1000000 --format csv
      snapper query history snapshots/myhost -p grace_seconds=0 -f json
      snapper query verdicts SNAP -f parquet -o verdicts.parquet
    """
    from snapper import catalog
    from snapper.render import render_table
    from snapper.snapshot import connect

    _check_format(format, ("table", "json", "csv", "parquet"))
    if list_ or name is None:
        import pyarrow as pa

        cat = _run(catalog.catalog)
        rows = [{"name": q.name, "description": q.description, "why": q.why,
                 "params": ", ".join(f"{p.name} {p.type}" + (f" = {p.default}" if p.default else "")
                                     for p in q.params) or "none"} for q in cat.values()]
        render_table(pa.Table.from_pylist(rows), "csv" if format == "parquet" else format, title="queries")
        return
    if not snapshots:
        _fail(UsageError(f"query {name}", "no snapshot given", "pass snapshot dirs or a series dir"))
    q = _run(lambda: catalog.get(name))
    given: dict[str, object] = {}
    known = {p.name: p for qq in [*catalog.view_order([q.name]), q] for p in qq.params}
    for kv in param or []:
        k, sep, v = kv.partition("=")
        if not sep:
            _fail(UsageError(f"--param {kv}", "not of the form k=v", "e.g. --param min_bytes=1000000"))
        if k not in known:
            _fail(UsageError(f"--param {k}", f"query {name} has no such parameter",
                             f"parameters: {', '.join(known) or 'none'}"))
        try:
            given[k] = known[k].convert(v)
        except SnapperError as e:
            _fail(e)
    snaps = _bind_args(snapshots or [])
    con = connect(snaps)
    catalog.bind_views(con)
    table = _run(lambda: catalog.run(con, name, given))
    if format == "parquet":
        import pyarrow.parquet as pq

        if output is None:
            _fail(UsageError("--format parquet", "needs --output FILE", "add -o result.parquet"))
        assert output is not None
        pq.write_table(table, str(output), compression="zstd")
        print(output)
        return
    render_table(table, format, title=name)


@app.command()
def views(
    snapshots: Annotated[list[Path], typer.Argument(help="snapshot dirs or a series dir")],
) -> None:
    """Print the CREATE VIEW statements that bind snapshots (a `snap` column per row) in any DuckDB.

    \b
    Examples:
      snapper views SNAP > bind.sql && duckdb -init bind.sql
      snapper views snapshots/myhost | duckdb -c ".read /dev/stdin" ...
    """
    from snapper import catalog
    from snapper.snapshot import view_statements

    snaps = _bind_args(snapshots)
    print("-- snapper views: tables of " + ", ".join(str(s.path) for s in snaps))
    for stmt in view_statements(snaps):
        print(stmt)
    print("-- derived views (queries/ with `view: true`); set their parameters first, e.g.")
    print("SET VARIABLE grace_seconds = 3600;")
    for stmt in catalog.derived_view_statements():
        print(stmt)


@app.command()
def sql(
    snapshots: Annotated[list[Path], typer.Argument(help="snapshot dirs or a series dir")],
    builtin: Annotated[bool, typer.Option("--builtin", help="use the built-in shell even when the duckdb "
                                          "CLI is installed")] = False,
) -> None:
    """An SQL shell with the snapshots bound as views, and every query of the catalogue as a view of its
    name. The duckdb CLI (PyPI duckdb-cli) when it is on PATH, else a small built-in shell.

    \b
    Examples:
      snapper sql snapshots/myhost
      D SELECT mechanism, sum(bytes) FROM leaks GROUP BY ALL;
      D SET VARIABLE grace_seconds = 0;      -- parameters are variables
      echo "SELECT count(*) FROM files;" | snapper sql SNAP
    """
    from snapper import catalog, shell

    snaps = _bind_args(snapshots)
    how = "built-in shell" if builtin or shell.duckdb_cli() is None else "duckdb CLI"
    print(f"snapper: {len(snaps)} snapshot(s) bound ({how}); queries are views, their SQL is in "
          f"{catalog.queries_dir()}", file=sys.stderr)
    code = _run(lambda: shell.run(snaps, builtin))
    raise typer.Exit(code)


@app.command("metrics")
def metrics_cmd(
    snapshot: Annotated[Path, typer.Argument(help="snapshot directory")],
    output: Annotated[Path, typer.Option("--output", "-o", help="the .prom file to write (atomically)")],
    grace: GraceOpt = "1h",
) -> None:
    """Write Prometheus textfile-collector metrics (overlay2, live, leaked, in-flight, by mechanism).

    \b
    Examples:
      snapper metrics SNAP -o /var/lib/node_exporter/textfile/snapper.prom
      (or in one go: snapper collect --metrics /var/lib/node_exporter/textfile/snapper.prom)
    """
    from snapper import metrics, verdict

    grace_s = _run(lambda: verdict.parse_duration(grace))
    _run(lambda: metrics.write(snapshot, output, grace_s))


@app.command()
def demo(
    format: FormatOpt = "table",
) -> None:
    """Run `leaks` and `explain` on the built-in sample snapshot (no Docker needed).

    The sample was collected by snapper from a real dockerd 20.10 on a test VM after real leaks were
    provoked: SIGKILL during `docker rmi` and `docker load`, a BuildKit duplicate layer, an orphan container
    mount (tests/integration/record_demo.py re-records it).
    """
    from snapper import demo as demo_mod
    from snapper import verdict

    _check_format(format)
    path = demo_mod.sample_path()
    if format != "table":  # the same rows and columns as `snapper leaks SAMPLE --grace 0`
        leaks(path, 0, "0", format, None, False)
        return
    print(f"demo: replaying the sample snapshot {path}")
    print("      (collected by snapper from a real dockerd 20.10 with real, deliberately provoked leaks)\n")
    show(path, "table")
    print()
    leaks(path, 0, "0", "table", None, False)
    biggest = _run(lambda: verdict.leaks(str(path), 0, 0))
    if biggest.num_rows:
        first = biggest.column("layer_id")[0].as_py()
        print(f"\n$ snapper explain {path} {first[:12]}")
        explain(path, first, "0", "table")
    print("\nnext: `snapper collect` on your host (as root), then `snapper leaks SNAPSHOT`.")


reclaim_app = typer.Typer(name="reclaim", no_args_is_help=True, rich_markup_mode=None,
                          help="Give leaked space back: plan, apply (quarantine), restore, purge.")
app.add_typer(reclaim_app)
QuarantineOpt = Annotated[Path | None, typer.Option("--quarantine", help="quarantine dir (default: "
                                                    "<parent of the data root>/.snapper-quarantine)")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="do it without asking (needed without a terminal)")]


def _confirm(command: str, question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        _fail(UsageError(f"reclaim {command}", "changes the data root and stdin is not a terminal",
                         "rerun with --yes"))
    if not typer.confirm(question, default=False):
        raise typer.Exit(1)


def _outcomes(rows: list[Any], title: str) -> None:
    import pyarrow as pa

    from snapper.render import render_table

    if rows:
        render_table(pa.Table.from_pylist([vars(r) for r in rows]), "table", title=title, byte_columns=("bytes",))


@reclaim_app.command("plan")
def reclaim_plan(
    snapshot: Annotated[Path, typer.Argument(help="snapshot directory")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="plan file (default reclaim-<plan id>.json)")] = None,
    mechanism: Annotated[list[str] | None, typer.Option("--mechanism", "-m", help="only this mechanism "
                                                        "(repeatable)")] = None,
    min_bytes: Annotated[int, typer.Option("--min-bytes", help="skip leaked dirs smaller than this")] = 0,
    grace: GraceOpt = "1h",
) -> None:
    """Write a plan of the leaked dirs to reclaim (JSON, 0600) and print it. Changes nothing.

    Examples:
      snapper reclaim plan SNAP -o plan.json
      snapper reclaim plan SNAP -m interrupted-layer-create --min-bytes 100000000
    """
    from snapper import reclaim, verdict
    from snapper.render import human_bytes

    grace_s = _run(lambda: verdict.parse_duration(grace))
    plan = _run(lambda: reclaim.make_plan(snapshot, mechanism or [], min_bytes, grace_s))
    path = _run(lambda: reclaim.write_plan(plan, out or Path(f"reclaim-{plan['plan_id']}.json")))
    _outcomes([reclaim.Outcome(e["id"], e["bytes"], e["mechanism"], "planned", e["evidence"])
               for e in plan["entries"]], f"plan {plan['plan_id']} for {plan['data_root']}")
    print(f"total {human_bytes(plan['total_bytes'])} in {len(plan['entries'])} dirs; plan written to {path}")


@reclaim_app.command("apply")
def reclaim_apply(
    plan: Annotated[Path, typer.Argument(help="plan file from `snapper reclaim plan`")],
    yes: YesOpt = False,
    stopped_only: Annotated[bool, typer.Option("--stopped-only", help="refuse while a dockerd runs on the "
                                               "data root")] = False,
    quarantine: QuarantineOpt = None,
) -> None:
    """Re-check every planned dir and move those still leaked and unchanged into the quarantine.

    Examples:
      snapper reclaim apply plan.json              (asks on a terminal)
      snapper reclaim apply plan.json --yes --stopped-only
    """
    from snapper import reclaim
    from snapper.render import human_bytes

    p = _run(lambda: reclaim.read_plan(plan))
    _confirm("apply", f"move up to {len(p['entries'])} dirs ({human_bytes(p['total_bytes'])}) of "
             f"{p['data_root']} into the quarantine?", yes)
    res = _run(lambda: reclaim.apply(plan, stopped_only, quarantine))
    for note in res.notes:
        print(f"journal: {note}", file=sys.stderr)
    _outcomes(res.outcomes, f"apply {res.plan_id}")
    moved = sum(1 for o in res.outcomes if o.result == "quarantined")
    print(f"quarantined {moved} dirs ({human_bytes(res.moved_bytes)}) in {res.quarantine}; "
          f"{sum(1 for o in res.outcomes if o.result == 'skipped')} skipped")


@reclaim_app.command("restore")
def reclaim_restore(
    plan: Annotated[str | None, typer.Argument(help="plan file or plan id")] = None,
    all_: Annotated[bool, typer.Option("--all", help="every plan in the quarantine")] = False,
    yes: YesOpt = False,
    root: Annotated[str | None, typer.Option(help="data root (to find the quarantine without a plan file)")] = None,
    quarantine: QuarantineOpt = None,
) -> None:
    """Move quarantined dirs back exactly where they were (a destination that exists is refused).

    Examples:
      snapper reclaim restore plan.json --yes
      snapper reclaim restore --all --root /var/lib/docker
    """
    from snapper import reclaim
    from snapper.errors import QuarantineError

    if (plan is None) == (not all_):
        _fail(UsageError("reclaim restore", "give a plan or --all (one of them)", "e.g. restore plan.json"))
    qdirs = _run(lambda: reclaim.quarantine_dirs(plan, root, quarantine))
    _confirm("restore", f"move quarantined dirs of {'every plan' if all_ else plan} in "
             f"{', '.join(map(str, qdirs))} back?", yes)
    outcomes, notes = [], []
    for qdir in qdirs:
        o, n = _run(lambda q=qdir: reclaim.restore(q, plan, all_))  # type: ignore[misc]
        outcomes += o
        notes += n
    for note in notes:
        print(f"journal: {note}", file=sys.stderr)
    _outcomes(outcomes, "restore")
    print(f"restored {sum(1 for o in outcomes if o.result == 'restored')} dirs")
    refused = [o for o in outcomes if o.result == "refused"]
    if refused:
        _fail(QuarantineError(refused[0].layer_id, f"not restored: {refused[0].reason}"
                              + (f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""),
                              "move what is in the way aside and run restore again"))


@reclaim_app.command("purge")
def reclaim_purge(
    older_than: Annotated[str, typer.Option("--older-than", help="only dirs quarantined longer ago than "
                                            "this (e.g. 7d, 0)")] = "7d",
    yes: YesOpt = False,
    root: Annotated[str | None, typer.Option(help="data root (default: daemon.json, else /var/lib/docker)")] = None,
    quarantine: QuarantineOpt = None,
) -> None:
    """Delete quarantined dirs for good and report the bytes freed (statvfs before and after).

    Examples:
      snapper reclaim purge --older-than 7d --yes
    """
    from snapper import reclaim, verdict
    from snapper.render import human_bytes

    try:
        age = verdict.parse_duration(older_than)
    except UsageError:
        _fail(UsageError(f"--older-than {older_than}", "not a duration", "use e.g. 0, 12h or 7d"))
    qdirs = _run(lambda: reclaim.quarantine_dirs(None, root, quarantine))
    _confirm("purge", f"delete dirs quarantined more than {older_than} ago in {', '.join(map(str, qdirs))} "
             "for good?", yes)
    for qdir in qdirs:
        res = _run(lambda q=qdir: reclaim.purge(q, age))  # type: ignore[misc]
        _outcomes(res.outcomes, f"purge {qdir}")
        print(f"purged {sum(1 for o in res.outcomes if o.result == 'purged')} dirs "
              f"({human_bytes(res.purged_bytes)} planned), filesystem freed {human_bytes(res.freed_bytes)}")


lake_app = typer.Typer(name="lake", no_args_is_help=True, rich_markup_mode=None,
                       help="The fleet lake: push snapshots to a shared store (local or s3://), query all hosts.")
app.add_typer(lake_app)
LakeOpt = Annotated[str, typer.Option("--lake", help="lake URL: a local path or s3://bucket/prefix")]
S3EndpointOpt = Annotated[str | None, typer.Option("--s3-endpoint", help="S3-compatible endpoint, e.g. "
                                                   "http://minio:9000 (default: $AWS_ENDPOINT_URL)")]


@lake_app.command("push")
def lake_push(
    snapshots: Annotated[list[Path], typer.Argument(help="snapshot dirs or series dirs")],
    lake_url: LakeOpt,
    files: Annotated[bool, typer.Option("--files", help="also push the full files table")] = False,
    s3_endpoint: S3EndpointOpt = None,
) -> None:
    """Push snapshots into the lake (idempotent, resumable: rerun after a failure).

    Examples:
      snapper lake push snapshots/myhost --lake /srv/lake
      snapper lake push SNAP --lake s3://fleet/snapper --s3-endpoint http://minio:9000
    """
    from snapper import lake

    snaps = _bind_args(snapshots)
    target = _run(lambda: lake.open_lake(lake_url, s3_endpoint))
    for res in _run(lambda: lake.push(target, snaps, files)):
        _print_push(res)


def _print_push(res: Any) -> None:
    counts = {s: sum(1 for w in res.files if w.status == s) for s in ("written", "replaced", "unchanged")}
    print(f"{res.host}/{res.snapshot}: " + ", ".join(f"{n} {s}" for s, n in counts.items())
          + f", {sum(w.bytes for w in res.files)} bytes" + (f", {res.cleaned} partial(s) removed"
                                                             if res.cleaned else ""))


@lake_app.command("query")
def lake_query(
    name: Annotated[str, typer.Argument(help="fleet query: leaks | leak_bytes | mechanisms | leak_rate | "
                                        "engine_upgrade | top_prefixes")],
    lake_url: LakeOpt,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="k=v (repeatable)")] = None,
    format: FormatOpt = "table",
    s3_endpoint: S3EndpointOpt = None,
    engine: Annotated[str, typer.Option("--engine", help="duckdb | spark (pyspark)")] = "duckdb",
    master: Annotated[str, typer.Option("--spark-master", help="Spark master URL")] = "local[*]",
) -> None:
    """Run a fleet query (queries/fleet/*.sql) on the lake with DuckDB, or Spark.

    Examples:
      snapper lake query leaks --lake /srv/lake
      snapper lake query leak_bytes --lake s3://fleet/snapper -p host=ci-07 -f csv
      snapper lake query mechanisms --lake /srv/lake --engine spark --spark-master spark://head:7077
    """
    from snapper import lake
    from snapper.render import render_table

    _check_format(format)
    if engine not in ("duckdb", "spark"):
        _fail(UsageError(f"--engine {engine}", "unknown engine", "use duckdb or spark"))
    given: dict[str, str] = {}
    for kv in param or []:
        k, sep, v = kv.partition("=")
        if not sep:
            _fail(UsageError(f"--param {kv}", "not of the form k=v", "e.g. --param host=ci-07"))
        given[k] = v
    target = _run(lambda: lake.open_lake(lake_url, s3_endpoint))
    table = _run(lambda: lake.run_spark(target, name, given, master) if engine == "spark"
                 else lake.run(target, name, given))
    render_table(table, format, title=f"fleet {name}")


@lake_app.command("report")
def lake_report(
    lake_url: LakeOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write")],
    s3_endpoint: S3EndpointOpt = None,
) -> None:
    """The fleet as one self-contained HTML page: hosts, leaked bytes over time, mechanisms by engine version,
    leak rates around engine upgrades, top leaked prefixes.

    Examples:
      snapper lake report --lake /srv/lake --out fleet.html
      snapper lake report --lake s3://fleet/snapper -o /var/www/fleet.html
    """
    from snapper import lake, lake_report

    target = _run(lambda: lake.open_lake(lake_url, s3_endpoint))
    print(_run(lambda: lake_report.write_report(target, out)))


@lake_app.command("compact")
def lake_compact(
    lake_url: LakeOpt,
    before: Annotated[str | None, typer.Option("--before", help="merge files dated before this day, yyyy-mm-dd "
                                               "(default: today, UTC)")] = None,
    s3_endpoint: S3EndpointOpt = None,
) -> None:
    """Merge each host's small per-snapshot files into one file per table and month (atomic, idempotent; a
    snapshot pushed again afterwards is not duplicated).

    Examples:
      snapper lake compact --lake /srv/lake
      snapper lake compact --lake s3://fleet/snapper --before 2026-12-01
    """
    import re
    from datetime import UTC, datetime

    from snapper import lake, lake_compact

    day = before or datetime.now(UTC).strftime("%Y-%m-%d")
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", day):
        _fail(UsageError(f"--before {day}", "not a day", "use yyyy-mm-dd, e.g. --before 2026-12-01"))
    target = _run(lambda: lake.open_lake(lake_url, s3_endpoint))
    res = _run(lambda: lake_compact.compact(target, day))
    written = [g for g in res.groups if g.status == "written"]
    print(f"merged {res.merged_files} files before {day} into {len(written)} compacted files "
          f"({sum(g.bytes for g in written)} bytes), {len(res.groups) - len(written)} unchanged")


def main() -> None:
    try:
        app(prog_name="snapper")
    except SnapperError as e:  # pragma: no cover - commands already map these
        print(f"snapper: error: {e.line()}", file=sys.stderr)
        sys.exit(e.exit_code)
    except BrokenPipeError:  # `snapper ... | head`: the reader is gone, nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)


if __name__ == "__main__":
    main()
