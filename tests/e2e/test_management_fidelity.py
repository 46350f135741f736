"""The Management Activity API off its documented happy path: NextPageUri links as seen in the wild,
and the 15 minutes the reference asks for between subscription start requests.

Emulator side over real HTTP; agent side with `agent collect --once` against the emulator.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from tests.e2e.helpers import assert_exact, edit_config, expected_ids, exported_ids, run_agent
from tests.e2e.test_graph_e2e import start_args
from tests.emulator.helpers import MANAGEMENT_SCOPE, bearer, mgmt_time, token
from tests.emulator_fixture import EmulatorInfo, running_emulator

OBSERVED = """
seed = 23
start = "-3h"
end = "-20m"
[tenant]
[streams."o365.exchange"]
records = 120
[streams."o365.sharepoint"]
records = 60
[management]
page_size = 2
blob_records = 10
content_delay = ["1m", "5m"]
straggler_fraction = 0.0
next_page_form = "observed"
"""


def _requests(emu: EmulatorInfo, ending: str) -> list[str]:
    """Paths with query (as the request log has them) of the Management requests whose path ends so."""
    lines = (emu.state_dir / "requests.ndjson").read_text().splitlines()
    paths = [json.loads(line)["path"] for line in lines if line]
    return [p for p in paths if urlsplit(p).path.endswith(ending)]


def _content_url(emu: EmulatorInfo, ct: str) -> str:
    end = datetime.now(UTC)
    return (f"{emu['management']}/api/v1.0/{emu['tenant_id']}/activity/feed/subscriptions/content?contentType={ct}"
            f"&startTime={mgmt_time(end - timedelta(hours=4))}&endTime={mgmt_time(end)}")


def test_emulator_emits_and_accepts_the_observed_next_page_form(tmp_path: Path) -> None:
    with running_emulator(OBSERVED, tmp_path) as emu:
        tok, s = token(emu, MANAGEMENT_SCOPE), emu.session()
        first = s.get(_content_url(emu, "Audit.Exchange"), headers=bearer(tok))
        assert first.status_code == 200, first.text
        link = first.headers["NextPageUri"]
        parts = urlsplit(link)
        query = dict(parse_qsl(parts.query))
        assert parts.path.startswith("/api/v1.0/") and "PublisherIdentifier" not in query
        assert set(query) == {"contenttype", "starttime", "endtime", "nextpage"}, "lower-case names"
        assert query["starttime"].endswith(".0000000Z"), "times rewritten with seven fraction digits"
        assert query["nextpage"].count("$") == 2, "a $-separated page token"
        listed = [b["contentId"] for b in first.json()]
        while link:  # followed verbatim, `$` unescaped; the next one with `$` as %24
            page = s.get(link, headers=bearer(tok))
            assert page.status_code == 200, page.text
            listed += [b["contentId"] for b in page.json()]
            nxt = page.headers.get("NextPageUri")
            link = nxt.replace("$", "%24") if nxt and len(listed) % 4 == 0 else nxt
        assert len(listed) == len(set(listed)) > 4
        bad = s.get(f"{_content_url(emu, 'Audit.Exchange')}&nextPage=20200220001806300068349$x$na0022",
                    headers=bearer(tok))
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "AF20031"
        docs = s.get(f"{_content_url(emu, 'Audit.Exchange')}&nextPage=00000000000000000R000000000000",
                     headers=bearer(tok))
        assert docs.status_code == 200, "the documented token form stays accepted"


def test_agent_follows_observed_next_page_links_verbatim(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    with running_emulator(OBSERVED, tmp_path, extra_args=start_args(tmp_path)) as emu:
        edit_config(cfg, "collection", initial_lookback="4h", management_window="24h")
        at = datetime.now(UTC)
        proc = run_agent(["collect", "--once", "--config", str(cfg)])
        assert proc.returncode == 0, proc.stderr[-3000:]
        streams = ("o365.exchange", "o365.sharepoint")
        assert_exact(exported_ids(cfg, streams), expected_ids(emu.truth(), at, streams))
        assert any("nextpage=" in p for p in _requests(emu, "/subscriptions/content")), "paged by observed links"


START = """
seed = 24
start = "-3h"
end = "-20m"
[tenant]
[streams."o365.exchange"]
records = 40
[streams."o365.sharepoint"]
records = 40
[streams."o365.general"]
records = 40
[management]
content_delay = ["1m", "5m"]
straggler_fraction = 0.0
subscribed = ["Audit.Exchange"]
start_interval = "{interval}"
"""


def test_emulator_refuses_a_second_start_within_the_interval(tmp_path: Path) -> None:
    with running_emulator(START.format(interval="3s"), tmp_path) as emu:
        tok, s = token(emu, MANAGEMENT_SCOPE), emu.session()
        root = f"{emu['management']}/api/v1.0/{emu['tenant_id']}/activity/feed"
        assert s.post(f"{root}/subscriptions/start?contentType=Audit.SharePoint", headers=bearer(tok)).ok
        again = s.post(f"{root}/subscriptions/start?contentType=Audit.General", headers=bearer(tok))
        assert again.status_code == 403 and again.json()["error"]["code"] == "AF429"
        assert "Method=StartSubscription" in again.json()["error"]["message"]
        assert s.post(f"{root}/subscriptions/stop?contentType=Audit.SharePoint", headers=bearer(tok)).ok
        time.sleep(3.2)
        assert s.post(f"{root}/subscriptions/start?contentType=Audit.General", headers=bearer(tok)).ok


def test_agent_restarts_subscriptions_one_interval_apart_and_loses_nothing(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    streams = ("o365.exchange", "o365.sharepoint", "o365.general")
    with running_emulator(START.format(interval="6s"), tmp_path, extra_args=start_args(tmp_path)) as emu:
        edit_config(cfg, "collection", initial_lookback="4h", management_window="24h")
        first = run_agent(["collect", "--once", "--config", str(cfg)])
        assert first.returncode != 0, "one of two needed starts was throttled"
        assert "15 minutes between subscription start requests" in first.stderr
        starts = _requests(emu, "/subscriptions/start")
        assert len(starts) == 2, "one try per needed start, no retry loop inside the run"
        time.sleep(6.5)
        # the subscription the first run started is stopped behind the agent's back: re-started
        tok = token(emu, MANAGEMENT_SCOPE)
        root = f"{emu['management']}/api/v1.0/{emu['tenant_id']}/activity/feed"
        started = "Audit.SharePoint" if "SharePoint" in starts[0] else "Audit.General"
        assert emu.session().post(f"{root}/subscriptions/stop?contentType={started}", headers=bearer(tok)).ok
        second = run_agent(["collect", "--once", "--config", str(cfg)])
        assert second.returncode != 0 and "15 minutes" in second.stderr, "two starts needed again, one allowed"
        time.sleep(6.5)
        at = datetime.now(UTC)
        third = run_agent(["collect", "--once", "--config", str(cfg)])
        assert third.returncode == 0, third.stderr[-3000:]
        assert_exact(exported_ids(cfg, streams), expected_ids(emu.truth(), at, streams))
