"""`agent audit-collector` on hand-made truth, records, fault and request logs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from emulator.audit.inputs import DEFAULT_ID_FIELDS, read_records, read_truth
from emulator.audit.text import to_text
from emulator.audit.verdict import audit

REPO = Path(__file__).resolve().parents[2]
T = "11111111-1111-4111-8111-111111111111"


def _truth(tmp: Path) -> Path:
    rows: list[dict[str, Any]] = []
    for i in range(10):
        rows.append({"stream": "graph.signins.interactive", "id": f"g{i}", "event_time": f"2026-01-01T0{i}:00:00Z",
                     "visible_at": "2026-01-02T00:00:00Z", "in_siem": True, "tenant": T})
    for i in range(6):
        rows.append({"stream": "o365.exchange", "id": f"M{i}", "event_time": "2026-01-01T01:00:00Z",
                     "visible_at": f"2026-01-01T0{i}:30:00Z", "in_siem": True, "tenant": T,
                     "content_id": f"blob{i // 2}", "available": i != 5})
    rows.append({"stream": "o365.exchange", "id": "late", "event_time": "2026-01-01T01:00:00Z",
                 "visible_at": "2026-01-09T00:00:00Z", "in_siem": True, "tenant": T,
                 "content_id": "blob9", "available": True})
    rows.append({"stream": "o365.sharepoint", "id": "s0", "event_time": "2026-01-01T01:00:00Z",
                 "visible_at": "2026-01-01T02:00:00Z", "in_siem": True, "tenant": T,
                 "content_id": "blobS", "available": True})
    path = tmp / "truth.ndjson"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_missed_duplicated_invented_and_what_is_not_counted(tmp_path: Path) -> None:
    truth = read_truth(_truth(tmp_path))
    ndjson = tmp_path / "a.ndjson"
    # g3 and g7 missed, g1 twice; M0/M1 (blob0) missed; M5 was never fetchable; "late" not yet visible.
    ndjson.write_text(
        "".join(json.dumps({"id": f"G{i}"}) + "\n" for i in range(10) if i not in (3, 7))  # case-insensitive
        + json.dumps({"id": "g1"}) + "\n"
        + json.dumps([{"Id": "M2"}, {"Id": "M3"}]) + "\n"  # an array per line: one blob
        + "{broken\n"
        + json.dumps({"no": "id"}) + "\n"
    )
    csv = tmp_path / "b.csv"
    csv.write_text("Id,Operation\nM4,Send\nghost,Send\n")
    got = read_records([ndjson, csv], DEFAULT_ID_FIELDS)
    assert got.unparseable == 1 and got.without_id == 1
    faults = [
        {"time": "2026-01-03T00:00:00Z", "api": "management", "tenant": T, "method": "GET",
         "path": "/api/v1.0/x/activity/feed/audit/blob0", "fault": "reset", "status": 200,
         "stream": "o365.exchange", "content_id": "blob0"},
        {"time": "2026-01-03T00:00:01Z", "api": "graph", "tenant": T, "method": "GET", "path": "/v1.0/p?$skiptoken=a",
         "fault": "server_error", "status": 503, "streams": ["graph.signins.interactive"],
         "newest": "2026-01-01T05:00:00Z", "oldest": None},
        {"time": "2026-01-03T00:00:02Z", "api": "graph", "tenant": T, "method": "GET", "path": "/v1.0/p?$skiptoken=b",
         "fault": "throttle", "status": 429, "streams": ["graph.signins.interactive"],
         "newest": "2026-01-01T09:00:00Z", "oldest": None},
    ]
    requests = [  # the throttled page was asked again and answered: recovered
        {"time": "2026-01-03T00:00:05Z", "client": "x/1", "host": "graph.microsoft.com", "method": "GET",
         "path": "/v1.0/p?$skiptoken=b", "status": 200, "throttled": False, "fault": None},
        {"time": "2026-01-03T00:00:02Z", "client": "x/1", "host": "graph.microsoft.com", "method": "GET",
         "path": "/v1.0/p?$skiptoken=b", "status": 429, "throttled": True, "fault": "throttle"},
    ]
    a = audit(truth, got, faults, requests)
    d = a.to_dict()
    assert not a.clean
    assert d["as_of"] == "2026-01-03T00:00:05Z"  # the last request
    g, m = d["streams"]["graph.signins.interactive"], d["streams"]["o365.exchange"]
    assert (g["expected"], g["collected"], g["missed"]) == (10, 8, 2)
    assert g["duplicated_ids"] == {"g1": 2} and g["extra_copies"] == 1
    assert (m["expected"], m["collected"], m["missed"]) == (5, 3, 2)
    assert (m["not_yet_visible"], m["unavailable_at_source"]) == (1, 1)
    assert d["not_collected"] == {"o365.sharepoint": 1}
    assert d["invented"] == {"count": 1, "ids": ["ghost"]}
    causes = {x["id"]: x["faults"] for x in d["missed"]}
    # g3 is older than the unrecovered 503's cursor; g7 is newer; the 429 was recovered.
    assert causes == {"g3": [1], "g7": [], "m0": [0], "m1": [0]}
    assert d["faults"]["recovered"] == 1
    assert [(f["index"], f["missed"]) for f in d["faults"]["explaining_losses"]] == [(0, 2), (1, 1)]
    assert d["clients"][0]["requests"] == 2 and d["clients"][0]["throttled"] == 1


def test_cli_clean_run_exits_0_and_json_array_and_stream_choice(tmp_path: Path) -> None:
    truth = _truth(tmp_path)
    records = tmp_path / "r.json"
    records.write_text(json.dumps([{"event": {"id": f"g{i}"}} for i in range(10)], indent=1))
    run = subprocess.run(
        [sys.executable, "-m", "agent", "audit-collector", "--truth", str(truth), "--records", str(records),
         "--id-field", "event.id", "--as-of", "2026-01-05T00:00:00Z"],
        capture_output=True, text=True, cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "nothing lost, duplicated or invented" in run.stdout
    # naming a stream makes it count even though the collector returned none of it
    run = subprocess.run(
        [sys.executable, "-m", "agent", "audit-collector", "--truth", str(truth), "--records", str(records),
         "--id-field", "event.id", "--stream", "o365.sharepoint", "--format", "json",
         "--as-of", "2026-01-05T00:00:00Z"],
        capture_output=True, text=True, cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert run.returncode == 3
    report = json.loads(run.stdout)
    assert report["streams"]["o365.sharepoint"]["missed_ids"] == ["s0"]
    assert "graph.signins.interactive" in report["not_collected"]


def test_cli_unreadable_input_exits_2(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "agent", "audit-collector", "--truth", str(tmp_path / "nope"),
         "--records", str(tmp_path / "nope2")],
        capture_output=True, text=True, cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert run.returncode == 2 and "cannot read truth" in run.stderr


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "audit-collector", *args, "--as-of", "2026-01-05T00:00:00Z"],
        capture_output=True, text=True, cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def _all_graph(tmp: Path, name: str = "g.ndjson", extra: str = "") -> Path:
    path = tmp / name
    path.write_text("".join(json.dumps({"id": f"g{i}"}) + "\n" for i in range(10)) + extra)
    return path


def test_csv_dialects_are_sniffed_or_given(tmp_path: Path) -> None:
    """';' (Excel in many locales) and tab separated exports are read, not taken as id-less rows."""
    truth = _truth(tmp_path)
    semi = tmp_path / "semi.csv"
    semi.write_text("Operation;Id;User\n" + "".join(f"Send;g{i};a@b\n" for i in range(10)))
    tabs = tmp_path / "tabs.tsv"
    tabs.write_text("Id\tOperation\n" + "".join(f"g{i}\tSend\n" for i in range(10)))
    for path in (semi, tabs):
        got = read_records([path], DEFAULT_ID_FIELDS)
        assert (sum(got.counts.values()), got.without_id, got.unparseable) == (10, 0, 0), path
    pipes = tmp_path / "export.txt"  # no .csv suffix: --delimiter says what it is
    pipes.write_text("Id|Operation\n" + "".join(f"g{i}|Send\n" for i in range(10)))
    run = _cli("--truth", str(truth), "--records", str(pipes), "--delimiter", "|")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "nothing lost, duplicated or invented" in run.stdout


def test_mostly_unreadable_records_exit_2(tmp_path: Path) -> None:
    truth = _truth(tmp_path)
    semi = tmp_path / "semi.csv"
    semi.write_text("Operation;Id\n" + "".join(f"Send;g{i}\n" for i in range(10)))
    run = _cli("--truth", str(truth), "--records", str(semi), "--delimiter", ",")  # the wrong separator
    assert run.returncode == 2
    assert "most records are unreadable" in run.stderr and "--delimiter" in run.stderr
    assert "MOST RECORDS UNREADABLE" in run.stdout
    lines = _all_graph(tmp_path, extra="not json\n" * 11)
    assert _cli("--truth", str(truth), "--records", str(lines)).returncode == 2
    few = _all_graph(tmp_path, "few.ndjson", extra="not json\n")  # one bad line among ten: still audited
    assert _cli("--truth", str(truth), "--records", str(few)).returncode == 0


def _request(path: str, status: int = 200, fault: str | None = None) -> dict[str, Any]:
    return {"time": "2026-01-03T00:00:00Z", "client": "c/1", "host": "h", "method": "GET", "path": path,
            "status": status, "throttled": False, "fault": fault}  # fmt: skip


def test_streams_asked_for_but_not_written_count_as_missed(tmp_path: Path) -> None:
    truth = read_truth(_truth(tmp_path))
    got = read_records([_all_graph(tmp_path)], DEFAULT_ID_FIELDS)
    requests = [
        _request("/beta/auditLogs/signIns?$filter=createdDateTime%20ge%202026-01-01T00:00:00Z"),
        _request(f"/api/v1.0/{T}/activity/feed/subscriptions/content?contentType=Audit.SharePoint"
                 "&startTime=2026-01-01T00:00:00&endTime=2026-01-02T00:00:00", status=503, fault="server_error"),
    ]  # fmt: skip
    d = audit(truth, got, [], requests).to_dict()
    assert d["streams"]["o365.sharepoint"]["missed_ids"] == ["s0"]  # asked for (even if it failed): counted
    assert d["counted_because_asked"] == ["o365.sharepoint"]
    assert d["not_collected"] == {"o365.exchange": 7}  # never asked for
    assert d["exit_status"] == 3
    # a blob fetch alone also says which stream it was for
    blob = [_request(f"/api/v1.0/{T}/activity/feed/audit/blob0?PublisherIdentifier={T}")]
    d = audit(truth, got, [], blob).to_dict()
    assert set(d["streams"]) == {"graph.signins.interactive", "o365.exchange"}
    assert d["streams"]["o365.exchange"]["missed"] == 5
    # sign-in event types come from the filter; an unrelated stream is not asked for
    ni = [_request("/beta/auditLogs/signIns?filter=signInEventTypes/any(t:%20t%20eq%20'nonInteractiveUser')")]
    from emulator.audit.requests import asked_streams

    assert asked_streams(ni, {}) == {"graph.signins.noninteractive"}
    text = to_text(audit(truth, got, [], requests))
    assert "counted although nothing was written: o365.sharepoint" in text
    assert "not collected at all: o365.exchange" in text and "never asked for" in text
    assert "pass --requests" in to_text(audit(truth, got, [], []))


def test_losses_duplicates_and_inventions_are_separate_verdicts(tmp_path: Path) -> None:
    truth = _truth(tmp_path)
    dup = _all_graph(tmp_path, "dup.ndjson", extra=json.dumps({"id": "g4"}) + "\n")
    run = _cli("--truth", str(truth), "--records", str(dup))
    assert run.returncode == 4, run.stdout
    assert "LOSSES FOUND" not in run.stdout and "DUPLICATES FOUND: 1 id written" in run.stdout
    assert "Losses:     none" in run.stdout and "Invented:   none" in run.stdout
    inv = _all_graph(tmp_path, "inv.ndjson", extra=json.dumps({"id": "ghost"}) + "\n" + json.dumps({"id": "g4"}) + "\n")
    run = _cli("--truth", str(truth), "--records", str(inv), "--format", "json")
    assert run.returncode == 5
    v = json.loads(run.stdout)["verdicts"]
    assert (v["losses"]["found"], v["duplicates"]["found"], v["invented"]["found"]) == (False, True, True)
    lost = tmp_path / "lost.ndjson"
    lost.write_text(json.dumps({"id": "g1"}) + "\n" + json.dumps({"id": "ghost"}) + "\n")
    run = _cli("--truth", str(truth), "--records", str(lost))
    assert run.returncode == 3 and "LOSSES FOUND: 9 records missed" in run.stdout
    assert "INVENTED RECORDS: 1 id not" in run.stdout and "Duplicates: none" in run.stdout


def test_a_fault_a_documented_client_gets_past_explains_nothing(tmp_path: Path) -> None:
    """An empty page with a next link costs a client that follows the link nothing: the records
    behind it were dropped by the collector, whatever the fault log says."""
    truth = read_truth(_truth(tmp_path))
    got = read_records([_all_graph(tmp_path)], DEFAULT_ID_FIELDS)
    got.counts.pop("g2")
    got.counts.pop("g8")
    common = {"api": "graph", "tenant": T, "method": "GET", "streams": ["graph.signins.interactive"], "oldest": None}
    faults = [
        {**common, "time": "2026-01-03T00:00:00Z", "path": "/beta/auditLogs/signIns?$skiptoken=a",
         "fault": "empty_page", "status": 200, "newest": "2026-01-01T09:00:00Z"},
        {**common, "time": "2026-01-03T00:00:01Z", "path": "/beta/auditLogs/signIns?$skiptoken=b",
         "fault": "server_error", "status": 503, "newest": "2026-01-01T03:00:00Z"},
    ]  # fmt: skip
    a = audit(truth, got, faults, [])
    d = a.to_dict()
    assert {m["id"]: m["faults"] for m in d["missed"]} == {"g2": [1], "g8": []}
    s = d["streams"]["graph.signins.interactive"]
    assert (s["missed_explained_by_faults"], s["dropped_by_collector"]) == (1, 1)
    assert d["faults"]["costless"] == 1 and [f["index"] for f in d["faults"]["explaining_losses"]] == [1]
    text = to_text(a)
    assert "1 dropped by the collector" in text and "cost a documented client nothing" in text


def test_domain_function_takes_typed_keywords_and_gives_the_cli_bytes(tmp_path: Path) -> None:
    """`audit_files` is the audit without argparse: the same report bytes and exit status as the
    command, from typed keyword values (datetimes, paths, sets)."""
    from datetime import UTC, datetime

    from emulator.audit.collector import render
    from emulator.audit.verdict import audit_files

    truth = _truth(tmp_path)
    records = _all_graph(tmp_path)
    run = _cli("--truth", str(truth), "--records", str(records), "--stream", "o365.sharepoint", "--format", "json")
    result = audit_files(
        truth=truth,
        records=[records],
        id_fields=DEFAULT_ID_FIELDS,
        streams={"o365.sharepoint"},
        as_of=datetime(2026, 1, 5, tzinfo=UTC),
    )
    assert render(result, output_format="json", show=10).decode() == run.stdout
    assert result.exit_status == run.returncode == 3
