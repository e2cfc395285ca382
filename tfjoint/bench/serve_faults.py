"""``tfjoint bench serve-faults``: closed-loop load on the model server while its versions change.

N gRPC and M REST client threads on loopback (127.0.0.1) each send their next Predict as soon
as the previous one returns, to an in-process ``tfjoint serve`` of a small toy model (the serving
tests' export, tfjoint/serving/toy.py), while a script changes the model base path:

1. ``push v2``: a complete copy, renamed into place as a Pusher does; v2 must serve.
2. ``partial v3``: ``3/saved_model.pb`` written before ``variables/`` (the load fails and is
   retried, then re-read once the directory changes); v2 must keep serving.
   ``complete v3``: ``variables/`` copied in; v3 must serve.
3. ``rollback``: the newest version (3) is deleted; v2 must serve again.
4. ``reload pin v1`` and ``reload latest``: HandleReloadConfigRequest over gRPC with a
   ``specific {versions: 1}`` policy, then the default ``latest``; v1, then v2 must serve.
5. ``delete all``: every version is deleted. From then on no complete version exists and
   requests may fail (NOT_FOUND); those failures are counted apart.

Each step waits (bounded) until the clients see the expected version, then keeps the load
on for ``--requests-per-step`` more requests. It prints the requests sent, the failures
(by reason) while a complete version existed and after the last one was deleted, and the
requests each version answered; the command exits 1 if any request failed while a complete
version existed, or a step did not reach its expected version in time::

    tfjoint bench serve-faults [--clients 4] [--rest-clients 2] [--requests-per-step 200] [--json FILE]
"""

from __future__ import annotations

import collections
import os
import shutil
import tempfile
import threading
import time
from typing import Any

DEFAULT_CLIENTS = 4
DEFAULT_REST_CLIENTS = 2
DEFAULT_REQUESTS_PER_STEP = 200
DEFAULT_POLL_SECONDS = 0.05  # --file_system_poll_wait_seconds of the server under test
DEFAULT_STEP_TIMEOUT_S = 20.0
REQUEST_TIMEOUT_S = 10.0
MODEL_NAME = "toy"
BATCH = 4  # examples per request


class _Load:
    """The closed-loop clients and what they saw: requests per protocol, answers per version
    (gRPC responses name it), failures by reason."""

    def __init__(self, target: str, rest_url: str | None, clients: int, rest_clients: int,
                 examples: list[bytes]):
        self.target, self.rest_url = target, rest_url
        self.requests = [[examples[(i * BATCH + j) % len(examples)] for j in range(BATCH)] for i in range(16)]
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.sent: collections.Counter = collections.Counter()  # per protocol
        self.ok = 0
        self.by_version: collections.Counter = collections.Counter()
        self.failed: collections.Counter = collections.Counter()  # while a complete version existed
        self.failed_without_version: collections.Counter = collections.Counter()
        self.no_complete_version_since: float | None = None  # monotonic time "delete all" began
        self.last_version = 0
        kinds = [(self._grpc_client, "grpc", k) for k in range(clients)]
        kinds += [(self._rest_client, "rest", k) for k in range(rest_clients)]
        self.threads = [threading.Thread(target=fn, args=(k,), daemon=True, name=f"faults-{kind}-{k}")
                        for fn, kind, k in kinds]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self, timeout: float = REQUEST_TIMEOUT_S + 5) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout)

    def _grpc_client(self, k: int) -> None:
        import grpc

        from tfjoint.serving.client import ServingClient

        client = ServingClient(self.target, MODEL_NAME, timeout=REQUEST_TIMEOUT_S, retries=0)
        try:
            while not self.stop.is_set():
                k += 1
                try:
                    response = client.predict_full(self.requests[k % len(self.requests)])
                except grpc.RpcError as e:
                    self._record("gRPC", None, f"{e.code().name}: {e.details()}")
                except Exception as e:  # noqa: BLE001 - every failure is counted with its reason
                    self._record("gRPC", None, f"{type(e).__name__}: {e}")
                else:
                    self._record("gRPC", response.model_spec.version.value, None)
        finally:
            client.close()

    def _rest_client(self, k: int) -> None:
        import base64
        import json
        import urllib.error
        import urllib.request

        bodies = [json.dumps({"instances": [{"b64": base64.b64encode(b).decode("ascii")} for b in r]})
                  for r in self.requests]
        url = f"{self.rest_url}/v1/models/{MODEL_NAME}:predict"
        while not self.stop.is_set():
            k += 1
            req = urllib.request.Request(url, data=bodies[k % len(bodies)].encode(),
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT_S) as resp:
                    answered = len(json.loads(resp.read())["predictions"]) == BATCH
            except urllib.error.HTTPError as e:
                body = e.read().decode("utf-8", "replace")
                try:
                    body = json.loads(body)["error"]
                except (ValueError, KeyError, TypeError):
                    pass
                self._record("REST", None, f"HTTP {e.code}: {' '.join(str(body).split())}")
            except Exception as e:  # noqa: BLE001
                self._record("REST", None, f"{type(e).__name__}: {e}")
            else:
                self._record("REST", 0, None if answered else "wrong number of predictions")

    def _record(self, protocol: str, version: int | None, reason: str | None) -> None:
        """version: the one that answered (0: an answer that does not say); reason: why it failed."""
        when = time.monotonic()
        with self.lock:
            self.sent[protocol] += 1
            if reason is None:
                self.ok += 1
                if version:
                    self.by_version[version] += 1
                    self.last_version = version
            elif self.no_complete_version_since is not None and when >= self.no_complete_version_since:
                self.failed_without_version[f"{protocol} {reason}"[:240]] += 1
            else:
                self.failed[f"{protocol} {reason}"[:240]] += 1

    def snapshot(self) -> tuple[int, int]:
        with self.lock:
            return sum(self.sent.values()), self.last_version


def _copy_partial(base: str, version: int, template: str) -> str:
    """``<base>/<version>/saved_model.pb`` without ``variables/``: a copy caught half way."""
    dst = os.path.join(base, str(version))
    os.makedirs(dst)
    shutil.copy(os.path.join(template, "saved_model.pb"), dst)
    return dst


def _reload(target: str, base: str, pin: int | None) -> None:
    """HandleReloadConfigRequest: the single model, pinned to ``pin`` or at its latest version."""
    from tensorflow_serving.apis import model_management_pb2

    from tfjoint.serving.client import ServingClient
    from tfjoint.serving.versions import single_model_config

    config = single_model_config(MODEL_NAME, base)
    if pin is not None:
        policy = config.model_config_list.config[0].model_version_policy
        policy.specific.versions.append(pin)
    with ServingClient(target, MODEL_NAME, timeout=60.0, retries=0) as client:
        client.models.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(config=config),
                                                timeout=60.0)


def _v3_failed(probe) -> bool:
    """Whether GetModelStatus reports a failed load of version 3 (the partial copy was tried)."""
    return any(s["version"] == 3 and s["error_code"] != 0 for s in probe.status(timeout=5.0))


def _script(base: str, template: str, probe, load: _Load) -> list[tuple[str, Any, int | None, Any]]:
    """(step name, action, version expected to serve afterwards (None: none need), and a
    condition the step also waits for (None: none))."""
    def push():
        from tfjoint.serving.toy import add_version

        add_version(base, 2, template)

    def complete():
        shutil.copytree(os.path.join(template, "variables"), os.path.join(base, "3", "variables"))

    def delete_all():
        for v in os.listdir(base):
            shutil.rmtree(os.path.join(base, v))

    def some_failed() -> bool:
        with load.lock:
            return bool(load.failed_without_version)

    return [
        ("v1 serving", lambda: None, 1, None),
        ("push v2 (complete copy)", push, 2, None),
        ("partial v3 (saved_model.pb, no variables/)", lambda: _copy_partial(base, 3, template), 2,
         lambda: _v3_failed(probe)),
        ("complete v3 (variables/ copied in)", complete, 3, None),
        ("rollback (delete v3)", lambda: shutil.rmtree(os.path.join(base, "3")), 2, None),
        ("reload config (pin v1)", lambda: _reload(probe.target, base, 1), 1, None),
        ("reload config (latest)", lambda: _reload(probe.target, base, None), 2, None),
        ("delete all (no complete version from here on)", delete_all, None, some_failed),
    ]


def _run_step(load: _Load, action, expected: int | None, until, requests: int,
              timeout: float) -> dict[str, Any]:
    """Runs ``action`` under load, waits until ``expected`` serves (and ``until()`` holds), then
    for ``requests`` more requests."""
    t0 = time.monotonic()
    sent0, _ = load.snapshot()
    if expected is None:
        with load.lock:
            load.no_complete_version_since = t0
    action()
    reached = None
    while time.monotonic() - t0 < timeout:
        sent, last = load.snapshot()
        if reached is None and (expected is None or last == expected) and (until is None or until()):
            reached, sent_at = time.monotonic() - t0, sent
        if reached is not None and sent - sent_at >= requests:
            break
        time.sleep(0.01)
    sent, last = load.snapshot()
    return {"expected_version": expected, "reached_after_s": reached, "last_version": last,
            "requests": sent - sent0, "seconds": time.monotonic() - t0}


def run_serve_faults(
    *,
    clients: int = DEFAULT_CLIENTS,
    rest_clients: int = DEFAULT_REST_CLIENTS,
    requests_per_step: int = DEFAULT_REQUESTS_PER_STEP,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
    step_timeout: float = DEFAULT_STEP_TIMEOUT_S,
    workdir: str | None = None,
    verbose: bool = False,
) -> dict[str, Any]:
    """Runs the script under load; returns the counts (see the module docstring)."""
    from tfjoint.serving.client import ServingClient
    from tfjoint.serving.server import serve_in_background
    from tfjoint.serving.toy import add_version, export_toy, serialized

    if clients < 1:
        raise ValueError(f"--clients must be >= 1 (the gRPC answers name the serving version), got {clients}")
    if rest_clients < 0:
        raise ValueError(f"--rest-clients must be >= 0, got {rest_clients}")
    if requests_per_step < 1:
        raise ValueError(f"--requests-per-step must be >= 1, got {requests_per_step}")
    if poll_seconds <= 0:
        raise ValueError(f"--poll-seconds must be > 0, got {poll_seconds}")
    if step_timeout <= 0:
        raise ValueError(f"--step-timeout must be > 0, got {step_timeout}")
    wall0 = time.perf_counter()
    own = workdir is None
    work = tempfile.mkdtemp(prefix="serve-faults-") if own else workdir
    try:
        template = export_toy(os.path.join(work, "export"))
        base = os.path.join(work, "models", MODEL_NAME)
        add_version(base, 1, template)
        steps: list[dict[str, Any]] = []
        with serve_in_background(model_name=MODEL_NAME, model_base_path=base, host="127.0.0.1", port=0,
                                 rest_api_port=0 if rest_clients else None,
                                 file_system_poll_wait_seconds=poll_seconds,
                                 max_num_load_retries=5, load_retry_interval_micros=int(poll_seconds * 1e6),
                                 ) as server:
            target = server.grpc_target
            probe = ServingClient(target, MODEL_NAME, retries=0)
            probe.wait_until_available(timeout=step_timeout)
            rest_url = server.rest_url if rest_clients else None
            load = _Load(target, rest_url, clients, rest_clients, serialized(64))
            load.start()
            try:
                for name, action, expected, until in _script(base, template, probe, load):
                    step = {"step": name, **_run_step(load, action, expected, until, requests_per_step,
                                                      step_timeout)}
                    steps.append(step)
                    if verbose:
                        print(_step_line(step), flush=True)
            finally:
                load.join()
                probe.close()
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)
    failed = sum(load.failed.values())
    return {
        "clients": clients,
        "rest_clients": rest_clients,
        "requests_per_step": requests_per_step,
        "poll_seconds": poll_seconds,
        "examples_per_request": BATCH,
        "host": "127.0.0.1",
        "steps": steps,
        "requests_sent": sum(load.sent.values()),
        "requests_sent_by_protocol": dict(load.sent),
        "requests_ok": load.ok,
        "failed_while_a_complete_version_existed": failed,
        "failure_reasons": dict(load.failed),
        "failed_after_the_last_version_was_deleted": sum(load.failed_without_version.values()),
        "failure_reasons_after_the_last_version_was_deleted": dict(load.failed_without_version),
        "served_by_version": {str(v): n for v, n in sorted(load.by_version.items())},
        "steps_timed_out": [s["step"] for s in steps if s["reached_after_s"] is None],
        "wall_seconds": time.perf_counter() - wall0,
    }


def _step_line(step: dict[str, Any]) -> str:
    reached = step["reached_after_s"]
    expect = "no version" if step["expected_version"] is None else f"v{step['expected_version']}"
    when = f"after {reached:.2f} s" if reached is not None else "NOT REACHED"
    return f"  {step['step']:<48} {expect} {when}; {step['requests']} requests in {step['seconds']:.2f} s"


def format_report(results: dict[str, Any]) -> str:
    lines = [_step_line(s) for s in results["steps"]]
    served = ", ".join(f"v{v}: {n}" for v, n in results["served_by_version"].items())
    by_protocol = ", ".join(f"{p}: {n}" for p, n in sorted(results["requests_sent_by_protocol"].items()))
    lines += [
        "",
        f"{results['clients']} gRPC and {results['rest_clients']} REST closed-loop clients on 127.0.0.1 "
        f"({results['examples_per_request']} examples per Predict), file system poll every "
        f"{results['poll_seconds']:g} s, {results['wall_seconds']:.1f} s:",
        f"requests sent: {results['requests_sent']} ({by_protocol}); answered: {results['requests_ok']} "
        f"(gRPC by version: {served})",
        f"failed while a complete version existed: {results['failed_while_a_complete_version_existed']}",
    ]
    lines += [f"  {n} x {reason}" for reason, n in results["failure_reasons"].items()]
    lines.append(f"failed after the last version was deleted (expected): "
                 f"{results['failed_after_the_last_version_was_deleted']}")
    excused = results["failure_reasons_after_the_last_version_was_deleted"]
    lines += [f"  {n} x {r}" for r, n in excused.items()]
    if results["steps_timed_out"]:
        late = ", ".join(results["steps_timed_out"])
        lines.append(f"steps that did not reach their version in time: {late}")
    return "\n".join(lines)


def passed(results: dict[str, Any]) -> bool:
    """No request failed while a complete version existed, and every step reached its version."""
    return results["failed_while_a_complete_version_existed"] == 0 and not results["steps_timed_out"]


__all__ = ["format_report", "passed", "run_serve_faults"]
