"""B3 orchestration cost.

1. Parse time: each DAG file of ``dags/`` imported cold in a fresh Python process (as the
   dag-processor's parse does: the module is executed) vs a bare ``import airflow.sdk`` in a
   fresh process, alternated, medians over repeats of the child's CPU seconds (wall beside).
   Interpreter start-up (``python -c pass``) is measured too, to show the import cost alone.
2. Per-task overhead: ``airflow standalone`` (api-server, scheduler, dag-processor,
   triggerer; LocalExecutor, SQLite) in a scratch ``AIRFLOW_HOME`` on a free loopback port,
   the demo data and a small demo config; ``retune_model`` runs (``window=reference``,
   ``force``) are triggered through the REST API and, once done, read back from it:
   overhead = (run duration - sum of the task instances' durations) / number of task
   instances that ran.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from common import BIN, ROOT, log, median, plot_path, pyplot, ratio, table

sys.path.insert(0, str(ROOT / "scripts"))
from procs import stop_group  # noqa: E402  # the one stopper scripts/, tests/ and bench/ share
from stack import FORKSERVER_ENV  # noqa: E402  # the LocalExecutor settings make airflow-ui and the stack use

BARE = "import airflow.sdk"
STARTUP = "pass"
PARSE = (
    "import importlib.util, sys\n"
    "spec = importlib.util.spec_from_file_location('dag_under_test', sys.argv[1])\n"
    "module = importlib.util.module_from_spec(spec)\n"
    "spec.loader.exec_module(module)\n"
)


def _settings(quick: bool) -> dict[str, Any]:
    return {"parse_repeats": 3, "runs": 1, "n_trials": 2} if quick else {"parse_repeats": 15, "runs": 3, "n_trials": 4}


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _timed_python(code: str, args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """CPU and wall seconds of a fresh ``python -c code args``."""
    cpu0, wall0 = _child_cpu(), time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=False)
    wall, cpu = time.perf_counter() - wall0, _child_cpu() - cpu0
    if proc.returncode != 0:
        raise RuntimeError(f"python -c {code!r} {args} failed: {proc.stderr[-2000:]}")
    return cpu, wall


def parse_times(repeats: int, home: Path) -> dict[str, Any]:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
    }
    dags = sorted(p for p in (ROOT / "dags").glob("*.py") if not p.name.startswith("_"))
    contenders: dict[str, tuple[str, list[str]]] = {"python start-up": (STARTUP, []), "import airflow.sdk": (BARE, [])}
    contenders.update({f"dags/{p.name}": (PARSE, [str(p)]) for p in dags})
    _timed_python(BARE, [], env)  # warm the file cache and write airflow.cfg once
    runs: dict[str, dict[str, list[float]]] = {k: {"cpu": [], "wall": []} for k in contenders}
    names = list(contenders)
    for rep in range(repeats):
        for label in names[rep % len(names) :] + names[: rep % len(names)]:
            cpu, wall = _timed_python(*contenders[label], env)
            runs[label]["cpu"].append(cpu)
            runs[label]["wall"].append(wall)
    med = {k: {"cpu_s": median(v["cpu"]), "wall_s": median(v["wall"]), "cpu_s_runs": v["cpu"]} for k, v in runs.items()}
    bare, start = med["import airflow.sdk"], med["python start-up"]
    per_dag = {}
    for label in names[2:]:
        m = med[label]
        per_dag[label] = {
            **m,
            "over_bare_cpu": ratio(m["cpu_s"], bare["cpu_s"]),
            "over_bare_wall": ratio(m["wall_s"], bare["wall_s"]),
            "import_only_over_bare": ratio(
                (m["cpu_s"] or 0) - (start["cpu_s"] or 0), (bare["cpu_s"] or 0) - (start["cpu_s"] or 0)
            ),
        }
    return {"bare": bare, "python_start_up": start, "dags": per_dag, "repeats": repeats}


# --------------------------------------------------------------------------- standalone


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Standalone:
    """A scratch ``airflow standalone`` on a free loopback port."""

    def __init__(self, base: Path, n_trials: int) -> None:
        from retune import demo_data

        self.base = base
        self.state, configs = base / "state", base / "configs"
        configs.mkdir(parents=True)
        demo_data.write(self.state / "data" / "demo", days=70, rows_per_day=40)
        raw = yaml.safe_load((ROOT / "include" / "configs" / "demo.yaml").read_text())
        raw["data"]["reference"] = {"start": "2025-01-01", "end": "2025-03-01"}
        raw["tuning"]["n_trials"] = n_trials
        raw["tuning"]["pruner"] = {"type": "median", "args": {"n_startup_trials": 1}}
        (configs / "demo.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        self.home = base / "airflow"
        self.port = _free_port()
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            # the recommended LocalExecutor set-up: tasks fork from a forkserver that imported
            # Retune's libraries (retune.preload); the overhead below is what is left around them
            **FORKSERVER_ENV,
            "RETUNE_STATE_DIR": str(self.state),
            "RETUNE_CONFIG_DIR": str(configs),
            "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
        }
        for name in ("MLFLOW_TRACKING_URI", "RETUNE_OPTUNA_STORAGE", "RETUNE_POLICY_DB", "AIRFLOW__CORE__UNIT_TEST_MODE"):
            self.env.pop(name, None)
        self.log_path = base / "standalone.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._token: str | None = None

    def start(self, timeout: float = 300) -> float:
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                [str(BIN / "airflow"), "standalone"], env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        t0 = time.monotonic()
        while not self.healthy():
            self.check_alive()
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"airflow standalone not healthy in {timeout} s:\n{self.log_tail()}")
            time.sleep(2)
        return time.monotonic() - t0

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        # The whole process group this benchmark started, the scheduler and its workers included
        # (they can outlive the standalone leader), so nothing of B3 runs beside the next benchmark.
        stop_group(self.proc)

    def check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"airflow standalone exited:\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def request(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> tuple[int, Any]:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        try:
            return status, json.loads(raw) if raw else None
        except json.JSONDecodeError:
            return status, raw.decode(errors="replace")

    def healthy(self) -> bool:
        try:
            status, body = self.request("GET", "/api/v2/monitor/health", auth=False)
        except OSError:
            return False
        return (
            status == 200
            and isinstance(body, dict)
            and all(body.get(k, {}).get("status") == "healthy" for k in ("metadatabase", "scheduler", "dag_processor"))
        )

    def token(self) -> str:
        if self._token is None:
            password = json.loads((self.home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
            req = urllib.request.Request(
                f"http://127.0.0.1:{self.port}/auth/token",
                data=json.dumps({"username": "admin", "password": password}).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(req, timeout=30) as resp:
                self._token = str(json.loads(resp.read())["access_token"])
        return self._token

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        t0 = time.monotonic()
        while self.request("GET", f"/api/v2/dags/{dag_id}/details")[0] != 200:
            self.check_alive()
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"DAG {dag_id} not parsed in {timeout} s")
            time.sleep(2)
        status, body = self.request("PATCH", f"/api/v2/dags/{dag_id}?update_mask=is_paused", {"is_paused": False})
        if status != 200:
            raise RuntimeError(f"unpause {dag_id}: {status} {body}")

    def run_dag(self, dag_id: str, conf: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
        status, run = self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})
        if status not in (200, 201):
            raise RuntimeError(f"trigger {dag_id}: {status} {run}")
        run_id = run["dag_run_id"]
        t0 = time.monotonic()
        while True:
            status, run = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
            if status == 200 and run["state"] in ("success", "failed"):
                break
            self.check_alive()
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"run {run_id} not done in {timeout} s")
            time.sleep(2)
        _, body = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100")
        return {"run": run, "task_instances": list(body["task_instances"]) if isinstance(body, dict) else []}


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def overhead_of(result: dict[str, Any]) -> dict[str, Any]:
    run = result["run"]
    start, end = _ts(run.get("start_date")), _ts(run.get("end_date"))
    ran = [ti for ti in result["task_instances"] if ti.get("start_date") and ti.get("end_date")]
    durations = {
        f"{ti['task_id']}{'' if ti.get('map_index', -1) in (-1, None) else '[' + str(ti['map_index']) + ']'}": (
            _ts(ti["end_date"]) - _ts(ti["start_date"])  # type: ignore[operator]
        ).total_seconds()
        for ti in ran
    }
    span = (end - start).total_seconds() if start and end else None
    total = sum(durations.values())
    return {
        "run_id": run["dag_run_id"],
        "state": run["state"],
        "run_s": span,
        "tasks": len(ran),
        "task_s": durations,
        "sum_task_s": total,
        "overhead_s_per_task": None if span is None or not ran else (span - total) / len(ran),
        "states": {ti["task_id"]: ti["state"] for ti in result["task_instances"]},
    }


def task_overhead(runs: int, n_trials: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="retune-b3-") as tmp:
        server = Standalone(Path(tmp), n_trials)
        try:
            log("B3 starting airflow standalone")
            startup = server.start()
            server.wait_for_dag("retune_model")
            out = []
            for i in range(runs):
                log(f"B3 retune_model run {i + 1}/{runs}")
                res = server.run_dag(
                    "retune_model", {"config": "demo", "window": "reference", "force": True, "trigger": "manual"}
                )
                out.append(overhead_of(res))
        finally:
            server.stop()
    ok = [r for r in out if r["state"] == "success"]
    return {
        "standalone_start_s": startup,
        "runs": out,
        "overhead_s_per_task": median([r["overhead_s_per_task"] for r in ok]),
        "note": "LocalExecutor on SQLite; each task instance is a fresh supervised process, forked from "
        "a forkserver that preloaded retune.preload (FORKSERVER_ENV)",
        "forkserver_preload": FORKSERVER_ENV["AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD"],
    }


def run(quick: bool, out: Path) -> dict[str, Any]:
    s = _settings(quick)
    with tempfile.TemporaryDirectory(prefix="retune-b3-parse-") as home:
        log("B3 parse times")
        parse = parse_times(s["parse_repeats"], Path(home))
    worst_label, worst = max(parse["dags"].items(), key=lambda kv: kv[1]["over_bare_cpu"] or 0)
    try:
        tasks = task_overhead(s["runs"], s["n_trials"])
    except (RuntimeError, TimeoutError, OSError) as exc:
        tasks = {"error": f"{type(exc).__name__}: {exc}"[:4000], "overhead_s_per_task": None}
    rows = [
        ["python start-up", parse["python_start_up"]["cpu_s"], parse["python_start_up"]["wall_s"], None],
        ["import airflow.sdk", parse["bare"]["cpu_s"], parse["bare"]["wall_s"], 1.0],
    ]
    rows += [[k, v["cpu_s"], v["wall_s"], v["over_bare_cpu"]] for k, v in parse["dags"].items()]
    run_rows = [
        [r["run_id"][-24:], r["state"], r["run_s"], r["sum_task_s"], r["tasks"], r["overhead_s_per_task"]]
        for r in tasks.get("runs", [])
    ]
    result = {
        "settings": s,
        "targets": {"worst_dag_over_bare": "<= 1.3", "overhead_s_per_task": "<= 1.5"},
        "ratios": {
            "worst_dag_over_bare": worst["over_bare_cpu"],
            "worst_dag_over_bare_wall": worst["over_bare_wall"],
            "worst_dag_import_only_over_bare": worst["import_only_over_bare"],
        },
        "worst_dag": worst_label,
        "overhead_s_per_task": tasks.get("overhead_s_per_task"),
        "parse": parse,
        "task_overhead": tasks,
        "table": table(
            "B3 DAG parse cold in a fresh process (median child CPU s; ratio over a bare `import airflow.sdk`)",
            ["process", "CPU s", "wall s", "over bare"],
            rows,
        ),
        "extra_tables": [
            table(
                "B3 per-task overhead of retune_model under airflow standalone (LocalExecutor)",
                ["run", "state", "run s", "sum of tasks s", "tasks", "overhead s/task"],
                run_rows or [["-", tasks.get("error", "no run"), None, None, None, None]],
            )
        ],
    }
    _plot(parse, tasks, plot_path(out, "B3", quick))
    return result


def _plot(parse: dict[str, Any], tasks: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.2))
    labels = ["python start-up", "import airflow.sdk", *parse["dags"]]
    vals = [parse["python_start_up"]["cpu_s"], parse["bare"]["cpu_s"], *(v["cpu_s"] for v in parse["dags"].values())]
    a.barh(labels, vals, color=["tab:grey", "tab:blue"] + ["tab:green"] * len(parse["dags"]))
    a.set_xlabel("child CPU seconds (median)")
    a.set_title("Parse cold in a fresh process", fontsize=9)
    runs = [r for r in tasks.get("runs", []) if r.get("task_s")]
    if runs:
        r = runs[0]
        names = list(r["task_s"])
        b.barh(names, [r["task_s"][n] for n in names], color="tab:green")
        b.set_xlabel("task instance seconds")
        b.set_title(
            f"retune_model: run {r['run_s']:.1f} s, tasks {r['sum_task_s']:.1f} s, {r['overhead_s_per_task']:.2f} s/task overhead",
            fontsize=8,
        )
    else:
        b.text(0.5, 0.5, tasks.get("error", "no run")[:80], ha="center", va="center", fontsize=7, wrap=True)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
