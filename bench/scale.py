"""How cost grows with input size: the seed ``reviews`` program on each local runner.

    python bench/scale.py --sizes 1000000,10000000,50000000 --runners inprocess,multiprocess,dask

Runners: ``inprocess`` (Beam's FnApiRunner in this process), ``multiprocess`` (DirectRunner,
``multi_processing``, 2 workers), ``dask`` (CeapDaskRunner on a LocalCluster of 2 worker
processes, 1 thread each). Each run is a child process; its whole process tree (runner
workers, Dask scheduler and workers) is sampled every 0.2 s for RSS, so the table shows
peak memory of the tree and of its largest process ("per worker").

Data: sizes up to --keep-max are generated once under --data and reused; larger ones are
generated into a temporary directory and deleted after their runs. By default every table
grows with the size (customers = rows / 10, contacts = rows / 5: the lookup sides of the
joins grow too); ``--dims-rows R`` holds them at their size for R rows, so the table shows
what the fact stream alone costs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
RUNNERS = {
    "inprocess": [],
    "multiprocess": ["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
    "dask": ["--runner=pipelines.runners.CeapDaskRunner"],
}


# -- memory of a process tree ------------------------------------------------------------


def _tree_rss(pid: int) -> tuple[int, int]:
    """(sum, max) RSS in bytes over ``pid`` and its descendants: psutil, else /proc."""
    try:
        import psutil

        root = psutil.Process(pid)
        rss = []
        for p in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                rss.append(p.memory_info().rss)
        return sum(rss), max(rss, default=0)
    except ImportError:
        return _proc_tree_rss(pid)
    except Exception:  # noqa: BLE001 - the process just ended
        return 0, 0


def _proc_tree_rss(pid: int) -> tuple[int, int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += children.get(p, [])
    rss = []
    page = os.sysconf("SC_PAGE_SIZE")
    for p in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            rss.append(int(Path(f"/proc/{p}/statm").read_text().split()[1]) * page)
    return sum(rss), max(rss, default=0)


# -- one run (in a child process) ----------------------------------------------------------


def run_one(warehouse: str, runner: str) -> dict:
    """Runs the program once; returns rows read, seconds and candidate count."""
    import run as cli
    from ceap.context import RunContext
    from configs.schema import parse_program, read_yaml
    from pipelines.batch import run_program

    cli._quiet_logs()
    text = (ROOT / "configs" / "reviews.yaml").read_text()
    program = parse_program(read_yaml(text.replace("data/warehouse", warehouse)), "reviews.yaml")
    home = Path(tempfile.mkdtemp(prefix="ceap-scale-home-"))
    os.environ["CEAP_HOME"] = str(home)
    ctx = RunContext(program="reviews", now=AS_OF, store=f"sqlite:///{home}/ceap.db")
    args = list(RUNNERS[runner])
    cluster = None
    try:
        if runner == "dask":
            from dask.distributed import LocalCluster

            cluster = LocalCluster(
                processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None,
                memory_limit=0,  # measure, do not let Dask spill or kill workers
            )  # fmt: skip
            args.append(f"--dask_client_address={cluster.scheduler_address}")
        t0 = time.perf_counter()
        funnel = run_program(program, ctx, args)
        seconds = time.perf_counter() - t0
    finally:
        if cluster is not None:
            cluster.close()
        shutil.rmtree(home, ignore_errors=True)
    return {"read": funnel.read, "seconds": seconds, "candidates": funnel.candidates,
            "adds_up": funnel.check()}  # fmt: skip


def measure(warehouse: Path, runner: str, timeout: float) -> dict:
    """Runs ``run_one`` in a child process, sampling its tree's RSS until it ends."""
    child = subprocess.Popen(
        [sys.executable, __file__, "--one", str(warehouse), runner],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    peak_sum = peak_max = 0
    t0 = time.perf_counter()
    while child.poll() is None:
        total, largest = _tree_rss(child.pid)
        peak_sum, peak_max = max(peak_sum, total), max(peak_max, largest)
        if time.perf_counter() - t0 > timeout:
            child.kill()
            child.wait()
            return {"error": f"over {timeout:.0f}s, stopped"}
        time.sleep(0.2)
    out = child.stdout.read().strip().splitlines()
    if child.returncode or not out:
        return {"error": f"exit {child.returncode}"}
    return {**json.loads(out[-1]), "peak_tree": peak_sum, "peak_proc": peak_max}


def warehouse_for(
    rows: int, data: Path, keep_max: int, dims_rows: int | None = None
) -> tuple[Path, bool]:
    """The warehouse for ``rows`` and whether to delete it after the runs."""
    from sample import generate_warehouse

    if rows <= keep_max:
        root = data / (f"rows-{rows}" if dims_rows is None else f"rows-{rows}-dims-{dims_rows}")
        if (root / "_done").exists():
            return root, False
        temporary = False
    else:
        root = Path(tempfile.mkdtemp(prefix=f"ceap-scale-{rows}-")) / "warehouse"
        temporary = True
    t0 = time.perf_counter()
    generate_warehouse(root, rows=rows, seed=42, as_of=AS_OF, dims_rows=dims_rows)
    (root / "_done").write_text("ok")
    print(f"# generated {rows:,} rows in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    return root, temporary


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000000,10000000,50000000")
    parser.add_argument("--runners", default="inprocess,multiprocess,dask")
    parser.add_argument("--data", default="/tmp/ceap-bench", help="cache for sizes <= --keep-max")
    parser.add_argument("--keep-max", type=int, default=10_000_000)
    parser.add_argument("--timeout", type=float, default=900, help="seconds per run")
    parser.add_argument(
        "--dims-rows", type=int, default=None,
        help="hold customers, catalogues and histories at their size for this many rows, so "
        "only the facts grow (default: everything grows with --sizes)",
    )  # fmt: skip
    parser.add_argument("--one", nargs=2, metavar=("WAREHOUSE", "RUNNER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(*args.one)), flush=True)
        return 0

    sizes = [int(s) for s in args.sizes.split(",")]
    runners = args.runners.split(",")
    unknown = set(runners) - set(RUNNERS)
    if unknown:
        parser.error(f"unknown runner(s) {sorted(unknown)}; choose from {sorted(RUNNERS)}")
    header = f"{'rows':>12} {'runner':<13}{'seconds':>9}{'rows/s':>12}{'peak tree MB':>14}{'peak proc MB':>14}  candidates"  # fmt: skip
    print(header, flush=True)
    failed = False
    for rows in sizes:
        warehouse, temporary = warehouse_for(rows, Path(args.data), args.keep_max, args.dims_rows)
        try:
            for runner in runners:
                r = measure(warehouse, runner, args.timeout)
                if "error" in r:
                    failed = True
                    print(f"{rows:>12,} {runner:<13}  {r['error']}", flush=True)
                    continue
                failed |= not r["adds_up"]
                print(
                    f"{r['read']:>12,} {runner:<13}{r['seconds']:>9.1f}{r['read'] / r['seconds']:>12,.0f}"
                    f"{r['peak_tree'] / 2**20:>14,.0f}{r['peak_proc'] / 2**20:>14,.0f}  {r['candidates']:,}",
                    flush=True,
                )  # fmt: skip
        finally:
            if temporary:
                shutil.rmtree(warehouse.parent, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
