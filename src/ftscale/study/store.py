"""The study store: one SQLite database per study directory, one row per job with its status and metrics.

The database (``study.sqlite``, WAL mode) is the single source of truth. A job's end (done or failed) is written
in one transaction. A running job carries its owner's pid and a heartbeat; only one process may run a study at a
time (an OS file lock, released by the kernel if the process dies), so rows left 'running' when a new run takes
the lock belong to a crashed run and are reset to pending. The lock is taken before anything in the directory
changes. A new database is built under a temporary name and renamed into place, so ``study.sqlite`` either does
not exist or is a complete store; a store that cannot be read (empty, truncated, not SQLite, not a study) is
refused with one line, never silently replaced.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import sqlite3
import time
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager, suppress
from importlib import metadata
from pathlib import Path
from typing import Any

from ftscale.errors import StoreError, UserError
from ftscale.study.plan import AXES, FACTORS, Job, StudyPlan
from ftscale.study.spec import StudySpec, spec_to_yaml

DB_NAME = "study.sqlite"
SPEC_NAME = "study.yaml"
LOCK_NAME = "run.lock"
_NEW_DB_SUFFIX = ".new"  # a database being created; renamed to DB_NAME once its schema is complete
STATUSES = ("pending", "running", "done", "failed")
# Metrics promoted to their own columns (all metrics stay in the JSON column).
METRIC_COLUMNS = (
    "loss",
    "ppl",
    "dev_loss",
    "bleu",
    "chrf",
    "rougeL",
    "trainable_params",
    "total_params",
    "best_step",
    "train_seconds",
)
_AXIS_TYPES = {
    "model_size": "TEXT",
    "non_embedding_params": "INTEGER",
    "pretrain_tokens": "INTEGER",
    "checkpoint_kind": "TEXT",
    "method": "TEXT",
    "pet_size": "INTEGER",
    "ft_examples": "INTEGER",
    "seed": "INTEGER",
}

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    label TEXT NOT NULL,
    plan_order INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    reason TEXT,
    error_detail TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    owner_pid INTEGER,
    heartbeat REAL,
    started_at REAL,
    ended_at REAL,
    duration_s REAL,
    params TEXT NOT NULL,
    deps TEXT NOT NULL,
    axes TEXT NOT NULL,
    factors TEXT NOT NULL,
    metrics TEXT,
    environment TEXT,
    spec_hash TEXT NOT NULL,
    failure_kind TEXT,
    outputs TEXT,
    {", ".join(f"{name} {sql_type}" for name, sql_type in _AXIS_TYPES.items())},
    {", ".join(f'"{name}" REAL' for name in METRIC_COLUMNS)}
);
"""


# Columns added after the first release: (name, type). Older stores gain them when opened.
_ADDED_COLUMNS = (("failure_kind", "TEXT"), ("outputs", "TEXT"))
# failure_kind of a failed job: 'error' (an exception or a crashed worker: a rerun retries it), 'final' (the
# same inputs would fail again, e.g. a diverged finetuning run: only --retry-failed reruns it), 'blocked' (a
# dependency failed: it follows that dependency).
FAILURE_KINDS = ("error", "final", "blocked")


def store_error(path: Path, exc: BaseException) -> StoreError:
    """One line for an SQLite or filesystem error on the store ``path``: what happened and what to do."""
    text = str(exc)
    low = text.lower()
    if "locked" in low or "busy" in low:
        return StoreError(f"{path}: the study store is locked by another process ({text}); wait and rerun")
    if "readonly" in low or "read-only" in low or "permission" in low or "unable to open" in low:
        return StoreError(
            f"{path}: cannot write the study store ({text}); use a writable --dir or fix its permissions"
        )
    if "full" in low or "no space" in low:
        return StoreError(f"{path}: the disk is full ({text}); free space and rerun the same command")
    if isinstance(exc, OSError):
        return StoreError(f"{path}: {exc.strerror or text}; check the path, its permissions and free space")
    return StoreError(
        f"{path}: the study store is damaged ({text}); restore it from a copy, or move the directory "
        "aside and rerun 'ftscale study run' to start the study afresh"
    )


class _Connection:
    """An SQLite connection whose errors become one-line :class:`StoreError` messages naming the store."""

    def __init__(self, path: Path, database: Path | None = None) -> None:
        self.path = path
        try:
            self._conn = sqlite3.connect(database or path, timeout=30, isolation_level=None)
        except sqlite3.Error as exc:
            raise store_error(path, exc) from None
        self._conn.row_factory = sqlite3.Row

    def execute(self, sql: str, args: Any = ()) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, args)
        except sqlite3.DatabaseError as exc:
            raise store_error(self.path, exc) from None

    def executescript(self, sql: str) -> None:
        try:
            self._conn.executescript(sql)
        except sqlite3.DatabaseError as exc:
            raise store_error(self.path, exc) from None

    def close(self) -> None:
        self._conn.close()


def _table_names(conn: _Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _create_database(path: Path) -> None:
    """Build an empty store under a temporary name, then rename it to ``path`` (atomic on POSIX)."""
    tmp = path.with_name(path.name + _NEW_DB_SUFFIX)
    for leftover in (tmp, *(tmp.with_name(tmp.name + end) for end in ("-wal", "-shm", "-journal"))):
        leftover.unlink(missing_ok=True)
    conn = _Connection(path, database=tmp)
    try:
        conn.executescript(_SCHEMA)
    finally:
        conn.close()
    os.replace(tmp, path)


def _acquire_lock(study_dir: Path) -> Any:
    """The run lock of ``study_dir``: an exclusive ``flock`` on ``DIR/run.lock`` holding the owner's pid."""
    handle = open(study_dir / LOCK_NAME, "a+")  # noqa: SIM115 - held for the whole run
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise UserError(
            f"{study_dir}: already being run by pid {owner}; wait for it or stop it, then rerun"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def _release_lock(handle: Any) -> None:
    fcntl.flock(handle, fcntl.LOCK_UN)
    handle.close()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise store_error(path, exc) from None


def environment() -> dict[str, Any]:
    """Versions and hardware that may affect results (no hostname, no user)."""

    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "platform": f"{platform.system()}-{platform.machine()}",
        "torch": version("torch"),
        "transformers": version("transformers"),
        "peft": version("peft"),
        "ftscale": version("ftscale") or _ftscale_version(),
        "cpu_count": os.cpu_count(),
    }


def _ftscale_version() -> str:
    from ftscale import __version__

    return __version__


class Store:
    """Access to ``DIR/study.sqlite``. Open with :meth:`open` (existing study) or :meth:`create`."""

    def __init__(self, study_dir: Path) -> None:
        """Open the existing store of ``study_dir`` (see :meth:`open` and :meth:`prepare`)."""
        self.study_dir = Path(study_dir)
        self.path = self.study_dir / DB_NAME
        self._lock_file: Any = None
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            raise StoreError(
                f"{self.study_dir}: not a study directory (no {DB_NAME}); run 'ftscale study run' first"
            ) from None
        except OSError as exc:
            raise store_error(self.path, exc) from None
        if size == 0:
            raise StoreError(
                f"{self.path}: the study store is empty (0 bytes), so its jobs and results are lost; restore "
                "it from a copy, or move the directory aside and rerun 'ftscale study run' to start afresh"
            )
        self._conn = _Connection(self.path)
        try:
            self._check_and_migrate()
        except BaseException:
            self._conn.close()
            raise

    def _check_and_migrate(self) -> None:
        """Refuse what is not a complete, readable study store; add columns that newer versions use."""
        conn = self._conn
        tables = _table_names(conn)  # "file is not a database" shows here
        if not {"meta", "jobs"} <= tables:
            raise StoreError(
                f"{self.path}: not an ftscale study store (tables: {', '.join(sorted(tables)) or 'none'}); "
                "point to a study directory, or move the file aside"
            )
        problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise store_error(self.path, sqlite3.DatabaseError("; ".join(problems[:3])))
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        present = {row["name"] for row in conn.execute("PRAGMA table_info(jobs)")}
        for name, sql_type in _ADDED_COLUMNS:
            if name not in present:
                conn.execute(f"ALTER TABLE jobs ADD COLUMN {name} {sql_type}")

    # --- opening ------------------------------------------------------------------------------------
    @classmethod
    def open(cls, study_dir: str | Path) -> Store:
        """The store of an existing study (a clear error if there is none or it cannot be read)."""
        return cls(Path(study_dir))

    @classmethod
    def prepare(
        cls, study_dir: str | Path, spec: StudySpec, spec_text: str | None = None, force: bool = False
    ) -> Store:
        """Open or create the study directory for ``spec`` and take its run lock; refuse a different spec
        unless ``force``.

        The lock is taken before anything is written, and the checks run under it, so a refused run (another
        run active, a different spec, a damaged store) leaves the directory's study as it was.
        """
        study_dir = Path(study_dir)
        if study_dir.exists() and not study_dir.is_dir():
            raise UserError(f"{study_dir}: exists and is not a directory; choose another --dir")
        db = study_dir / DB_NAME
        ours = {
            LOCK_NAME,
            DB_NAME + _NEW_DB_SUFFIX,
        }  # what a run that stopped before its store existed leaves
        if (
            not db.exists()
            and study_dir.is_dir()
            and any(entry.name not in ours for entry in study_dir.iterdir())
            and not force
        ):
            raise UserError(
                f"{study_dir}: directory is not empty and is not a study; use a new --dir or --force"
            )
        try:
            study_dir.mkdir(parents=True, exist_ok=True)
            lock = _acquire_lock(study_dir)
        except OSError as exc:
            raise StoreError(
                f"{study_dir}: cannot write the study directory ({exc.strerror or exc}); "
                "choose a writable --dir with free space"
            ) from None
        try:
            if not db.exists():
                try:
                    _create_database(db)
                except OSError as exc:
                    raise store_error(db, exc) from None
            store = cls(study_dir)
        except BaseException:
            _release_lock(lock)
            raise
        store._lock_file = lock
        try:
            spec_hash = spec.identity_hash()
            stored = store.meta("spec_hash")
            if stored is not None and stored != spec_hash and not force:
                raise UserError(
                    f"{study_dir}: holds a different study spec ({study_dir / SPEC_NAME}); "
                    "use a new --dir, or --force to replace its plan (finished runs with the same id are kept)"
                )
            _write_atomic(study_dir / SPEC_NAME, spec_text if spec_text is not None else spec_to_yaml(spec))
            store.set_meta("spec_hash", spec_hash)
            store.set_meta("name", spec.name)
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        self.release_lock()
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- run lock -----------------------------------------------------------------------------------
    def acquire_lock(self) -> None:
        """Take the study's run lock (one driver at a time); the kernel frees it if the process dies.
        :meth:`prepare` already holds it."""
        if self._lock_file is None:
            self._lock_file = _acquire_lock(self.study_dir)

    def release_lock(self) -> None:
        if self._lock_file is not None:
            _release_lock(self._lock_file)
            self._lock_file = None

    def lock_is_held(self) -> bool:
        """Whether some process is running this study now."""
        lock_path = self.study_dir / LOCK_NAME
        if self._lock_file is not None:
            return True
        if not lock_path.exists():
            return False
        with open(lock_path) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False

    # --- meta ---------------------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row["value"] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # --- plan sync ----------------------------------------------------------------------------------
    def sync_plan(self, plan: StudyPlan) -> None:
        """Insert the plan's new jobs as pending and refresh factor memberships of existing ones.

        Jobs of an older plan that the current plan no longer has are kept (their results stay exportable)
        but are not run.
        """
        spec_hash = plan.spec.identity_hash()
        with self._transaction() as conn:
            for order, job in enumerate(plan.jobs):
                axis_values = [job.axes.get(name) for name in _AXIS_TYPES]
                conn.execute(
                    f"""INSERT INTO jobs (id, kind, label, plan_order, params, deps, axes, factors, spec_hash,
                        {", ".join(_AXIS_TYPES)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, {", ".join("?" * len(_AXIS_TYPES))})
                        ON CONFLICT(id) DO UPDATE SET factors = excluded.factors, label = excluded.label,
                        plan_order = excluded.plan_order, spec_hash = excluded.spec_hash""",
                    (
                        job.id,
                        job.kind,
                        job.label,
                        order,
                        json.dumps(job.params, sort_keys=True),
                        json.dumps(list(job.deps)),
                        json.dumps(job.axes, sort_keys=True),
                        json.dumps(job.factors, sort_keys=True),
                        spec_hash,
                        *axis_values,
                    ),
                )

    def reset_interrupted(self, keep: Collection[str] = ()) -> int:
        """After taking the run lock: rows still 'running' belong to a dead run; make them pending again, except
        those in ``keep`` (attempts that the backend still runs, adopted by this run: they stay running, now owned
        by this process)."""
        keep = list(keep)
        marks = ",".join("?" * len(keep))
        with self._transaction() as conn:
            if keep:
                conn.execute(
                    f"UPDATE jobs SET owner_pid = ?, heartbeat = ? WHERE status = 'running' AND id IN ({marks})",
                    (os.getpid(), time.time(), *keep),
                )
            cursor = conn.execute(
                "UPDATE jobs SET status = 'pending', reason = 'interrupted (previous run stopped)', owner_pid = NULL "
                "WHERE status = 'running'" + (f" AND id NOT IN ({marks})" if keep else ""),
                tuple(keep),
            )
            return cursor.rowcount

    def reset_failed(self, job_ids: list[str] | None = None, include_final: bool = False) -> int:
        """Failed jobs become pending again for a new run: those that failed with an error and those blocked
        by a failed dependency; jobs that failed for good ('final', e.g. diverged) only with ``include_final``."""
        kinds = "" if include_final else " AND (failure_kind IS NULL OR failure_kind != 'final')"
        with self._transaction() as conn:
            cursor = conn.execute(
                "UPDATE jobs SET status = 'pending', failures = 0, failure_kind = NULL WHERE status = 'failed'"
                + kinds
                + (f" AND id IN ({','.join('?' * len(job_ids))})" if job_ids else ""),
                tuple(job_ids or ()),
            )
            return cursor.rowcount

    def invalidate(self, job_ids: list[str], reason: str) -> None:
        """Make done (or failed) jobs pending again and forget their results: their outputs are gone, or the
        user reset them. Attempt counts are kept."""
        if not job_ids:
            return
        cleared = ", ".join(f'"{name}" = NULL' for name in METRIC_COLUMNS)
        with self._transaction() as conn:
            conn.execute(
                f"UPDATE jobs SET status = 'pending', reason = ?, error_detail = NULL, failures = 0, "
                f"failure_kind = NULL, metrics = NULL, outputs = NULL, ended_at = NULL, duration_s = NULL, "
                f"{cleared} WHERE id IN ({','.join('?' * len(job_ids))})",
                (reason, *job_ids),
            )

    # --- job lifecycle --------------------------------------------------------------------------------
    def mark_running(self, job_id: str) -> int:
        """Record an attempt start; returns the attempt number (1-based)."""
        now = time.time()
        with self._transaction() as conn:
            conn.execute(
                "UPDATE jobs SET status = 'running', attempts = attempts + 1, owner_pid = ?, heartbeat = ?, "
                "started_at = ?, ended_at = NULL, duration_s = NULL WHERE id = ?",
                (os.getpid(), now, now, job_id),
            )
            return int(conn.execute("SELECT attempts FROM jobs WHERE id = ?", (job_id,)).fetchone()[0])

    def heartbeat(self, job_ids: list[str]) -> None:
        if job_ids:
            self._conn.execute(
                f"UPDATE jobs SET heartbeat = ? WHERE id IN ({','.join('?' * len(job_ids))})",
                (time.time(), *job_ids),
            )

    def mark_done(
        self,
        job_id: str,
        metrics: Mapping[str, Any],
        env: Mapping[str, Any] | None = None,
        outputs: Mapping[str, int] | None = None,
    ) -> None:
        """Record a finished job: status, metrics (JSON + promoted columns), timing, environment and the files
        it left in its directory (``outputs``: relative path -> size), atomically."""
        now = time.time()
        clean = json.loads(json.dumps(dict(metrics), default=_json_default))
        promoted = [_as_float(clean.get(name)) for name in METRIC_COLUMNS]
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT started_at, non_embedding_params FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
            started = row["started_at"] if row and row["started_at"] else now
            ne_params = clean.get("non_embedding_params", row["non_embedding_params"] if row else None)
            conn.execute(
                f"""UPDATE jobs SET status = 'done', reason = NULL, error_detail = NULL, owner_pid = NULL,
                    failure_kind = NULL, outputs = ?,
                    ended_at = ?, duration_s = ?, metrics = ?, environment = ?, non_embedding_params = ?,
                    {", ".join(f'"{name}" = ?' for name in METRIC_COLUMNS)} WHERE id = ?""",
                (
                    json.dumps(dict(outputs), sort_keys=True) if outputs is not None else None,
                    now,
                    now - started,
                    json.dumps(clean, sort_keys=True),
                    json.dumps(dict(env or {}), sort_keys=True),
                    ne_params,
                    *promoted,
                    job_id,
                ),
            )

    def mark_failed(
        self, job_id: str, reason: str, detail: str | None = None, final: bool = True, kind: str = "error"
    ) -> None:
        """Record a failed attempt; ``final`` says no retry follows in this run (status 'failed', else back to
        'pending'). ``kind`` says what a later run does with it: 'error' (retried) or 'final' (only with
        --retry-failed)."""
        if kind not in FAILURE_KINDS:
            raise ValueError(f"failure kind {kind!r} is not one of {FAILURE_KINDS}")
        now = time.time()
        status = "failed" if final else "pending"
        with self._transaction() as conn:
            row = conn.execute("SELECT started_at FROM jobs WHERE id = ?", (job_id,)).fetchone()
            started = row["started_at"] if row and row["started_at"] else now
            conn.execute(
                "UPDATE jobs SET status = ?, reason = ?, error_detail = ?, failures = failures + 1, "
                "failure_kind = ?, owner_pid = NULL, ended_at = ?, duration_s = ? WHERE id = ?",
                (status, reason, detail, kind if final else None, now, now - started, job_id),
            )

    def mark_interrupted(self, job_id: str, reason: str = "interrupted (Ctrl-C)") -> None:
        """A job stopped by the user: pending again, not counted as a failure (like a job of a killed run)."""
        with self._transaction() as conn:
            conn.execute(
                "UPDATE jobs SET status = 'pending', reason = ?, owner_pid = NULL WHERE id = ?",
                (reason, job_id),
            )

    def mark_blocked(self, job_id: str, dep_id: str, dep_label: str | None = None) -> None:
        what = f"{dep_label} ({dep_id[:12]})" if dep_label else dep_id[:12]
        with self._transaction() as conn:
            conn.execute(
                "UPDATE jobs SET status = 'failed', failure_kind = 'blocked', reason = ? WHERE id = ?",
                (f"dependency {what} failed", job_id),
            )

    # --- reading ------------------------------------------------------------------------------------
    def rows(self, ids: list[str] | None = None) -> list[dict[str, Any]]:
        query = "SELECT * FROM jobs"
        args: tuple[Any, ...] = ()
        if ids is not None:
            query += f" WHERE id IN ({','.join('?' * len(ids))})"
            args = tuple(ids)
        rows = [dict(row) for row in self._conn.execute(query + " ORDER BY plan_order", args)]
        for row in rows:
            for key in ("params", "deps", "axes", "factors", "metrics", "environment", "outputs"):
                row[key] = json.loads(row[key]) if row[key] else None
        return rows

    def statuses(self) -> dict[str, str]:
        return {row["id"]: row["status"] for row in self._conn.execute("SELECT id, status FROM jobs")}

    def metrics_of(self, job_id: str) -> dict[str, Any]:
        row = self._conn.execute("SELECT metrics FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return json.loads(row["metrics"]) if row and row["metrics"] else {}

    def to_dataframe(self) -> Any:
        """One row per job: ids, status, axes, factor memberships (``heldout_<factor>``: None when the run is
        not part of that factor), promoted metrics, ``metrics`` / ``params`` as JSON text, timings."""
        import pandas as pd

        records = []
        rows = self.rows()
        by_id = {row["id"]: row for row in rows}
        for row in rows:
            record = {
                key: row[key] for key in ("id", "kind", "label", "status", "reason", "attempts", "failures")
            }
            record.update({name: row[name] for name in _AXIS_TYPES})
            if record["non_embedding_params"] is None:
                # finetuning runs inherit the parameter count their pretraining job reported
                for dep in row["deps"]:
                    dep_params = by_id.get(dep, {}).get("non_embedding_params")
                    if dep_params is not None:
                        record["non_embedding_params"] = dep_params
            factors = row["factors"] or {}
            record["factors"] = ",".join(sorted(factors))
            for factor in FACTORS:
                record[f"heldout_{factor}"] = factors.get(factor)
            record.update({name: row[name] for name in METRIC_COLUMNS})
            for key in ("started_at", "ended_at", "duration_s", "spec_hash"):
                record[key] = row[key]
            record["metrics"] = (
                json.dumps(row["metrics"], sort_keys=True) if row["metrics"] is not None else None
            )
            record["params"] = json.dumps(row["params"], sort_keys=True)
            record["environment"] = (
                json.dumps(row["environment"], sort_keys=True) if row["environment"] is not None else None
            )
            records.append(record)
        frame = pd.DataFrame.from_records(records)
        for column in (
            "non_embedding_params",
            "pretrain_tokens",
            "pet_size",
            "ft_examples",
            "seed",
            "attempts",
        ):
            if column in frame:
                frame[column] = frame[column].astype("Int64")
        return frame

    def export(self, out: str | Path, fmt: str) -> Path:
        return write_table(self.to_dataframe(), out, fmt)


def write_table(frame: Any, out: str | Path, fmt: str) -> Path:
    """Write a data frame to ``out`` as CSV or Parquet atomically (a temporary file, then a rename)."""
    out = Path(out)
    if fmt not in ("csv", "parquet"):
        raise UserError(f"--format {fmt!r}: choose csv or parquet")
    if out.is_dir():
        raise UserError(f"--out {out}: is a directory; give a file path")
    tmp = out.with_name(out.name + ".tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
        tmp.replace(out)
    except OSError as exc:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise UserError(
            f"--out {out}: cannot write ({exc.strerror or exc}); choose a writable path"
        ) from None
    return out


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)


__all__ = [
    "AXES",
    "DB_NAME",
    "FAILURE_KINDS",
    "METRIC_COLUMNS",
    "SPEC_NAME",
    "Job",
    "Store",
    "environment",
    "store_error",
    "write_table",
]
