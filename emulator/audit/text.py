"""The text form of `agent audit-collector`'s report: the per-stream table, what was missed,
duplicated and invented, the faults, each client's requests, and the three separate verdicts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emulator.audit.verdict import Audit


def _ids(ids: list[str], show: int) -> str:
    more = f" ... and {len(ids) - show} more" if len(ids) > show else ""
    return ", ".join(ids[:show]) + more


def _table(d: dict[str, Any]) -> list[str]:
    head = f"{'stream':<32} {'expected':>8} {'collected':>9} {'missed':>7} {'duplicated':>10}  faults explain"
    out = [head, "-" * len(head)]
    for name, s in d["streams"].items():
        out.append(
            f"{name:<32} {s['expected']:>8} {s['collected']:>9} {s['missed']:>7} {s['duplicated']:>10}  "
            f"{s['missed_explained_by_faults']} of {s['missed']}"
        )
    out.append(f"{'invented (ids not in the truth)':<32} {'':>8} {d['invented']['count']:>9}")
    for name in d["counted_because_asked"]:
        out.append(f"counted although nothing was written: {name} (the request log shows the collector asked for it)")
    for name, n in d["not_collected"].items():
        out.append(f"not collected at all: {name} ({n} records in the truth; never asked for)")
    if d["streams_from"] == "records":
        out.append("no request log: streams the collector wrote nothing of are not counted (pass --requests)")
    u = d["unreadable"]
    if u["lines"] or u["without_id"]:
        out.append(f"unreadable: {u['lines']} lines/rows, {u['without_id']} records without an id field")
    for name, s in d["streams"].items():
        if s["not_yet_visible"] or s["unavailable_at_source"]:
            out.append(
                f"{name}: not counted: {s['not_yet_visible']} not yet visible at as-of, "
                f"{s['unavailable_at_source']} never fetchable at the source"
            )
    return out


def _details(d: dict[str, Any], show: int) -> list[str]:
    out = []
    for name, s in d["streams"].items():
        if s["missed"]:
            out.append(f"{name}: missed {s['missed']}: {_ids(s['missed_ids'], show)}")
            if s["dropped_by_collector"]:
                out.append(
                    f"  {s['dropped_by_collector']} dropped by the collector "
                    "(no fault a client retrying as documented could have lost them to)"
                )
        if s["duplicated"]:
            out.append(f"{name}: duplicated {s['duplicated']}: {_ids(list(s['duplicated_ids']), show)}")
    if d["invented"]["count"]:
        out.append(f"invented {d['invented']['count']}: {_ids(d['invented']['ids'], show)}")
    return out


def _faults(d: dict[str, Any], show: int) -> list[str]:
    faults = d["faults"]
    if not faults["total"]:
        return []
    kinds = ", ".join(f"{k} {n}" for k, n in faults["by_kind"].items())
    out = [
        "",
        f"Emulator faults injected: {faults['total']} ({kinds}); "
        f"{faults['recovered']} recovered (the same request later answered)",
    ]
    if faults["costless"]:
        out.append(
            f"  {faults['costless']} cost a documented client nothing (an empty page with a next link: "
            "follow the link) and explain no loss"
        )
    explaining = faults["explaining_losses"]
    if explaining:
        total = sum(f["missed"] for f in explaining)
        out.append(f"  {len(explaining)} not recovered, explaining {total} missed records:")
    for f in explaining[:show]:
        out.append(
            f"  #{f['index']} {f.get('time')} {f.get('fault')} (HTTP {f.get('status')}) on "
            f"{f.get('method')} {f.get('path')}: may explain {f['missed']} missed"
        )
    if len(explaining) > show:
        out.append(f"  ... and {len(explaining) - show} more (--format json lists each)")
    return out


def _clients(a: Audit) -> list[str]:
    if not a.clients:
        return []
    out = ["", f"{'client (User-Agent)':<40} {'requests':>8} {'throttled':>9} {'errors':>6} {'faults':>6}"]
    for c in a.clients:
        out.append(f"{c['client'][:40]:<40} {c['requests']:>8} {c['throttled']:>9} {c['errors']:>6} {c['faults']:>6}")
    return out


def _n(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else many or one + 's'}"


def _verdicts(d: dict[str, Any]) -> list[str]:
    v = d["verdicts"]
    losses, dups, inv = v["losses"], v["duplicates"], v["invented"]
    return [
        "",
        "Losses:     "
        + (
            f"LOSSES FOUND: {_n(losses['missed'], 'record')} missed ({losses['dropped_by_collector']} dropped by the "
            "collector, the rest after faults it did not recover from)"
            if losses["found"]
            else "none: every expected record was written"
        ),
        "Duplicates: "
        + (
            f"DUPLICATES FOUND: {_n(dups['ids'], 'id')} written more than once "
            f"({_n(dups['extra_copies'], 'extra copy', 'extra copies')})"
            if dups["found"]
            else "none"
        ),
        "Invented:   " + (f"INVENTED RECORDS: {_n(inv['ids'], 'id')} not in the truth" if inv["found"] else "none"),
        "Result: " + _result(d),
    ]


def _result(d: dict[str, Any]) -> str:
    if d["unreadable"]["mostly"]:
        return "MOST RECORDS UNREADABLE: the verdicts describe a misreading (exit 2)"
    return "nothing lost, duplicated or invented" if d["clean"] else f"see the verdicts above (exit {d['exit_status']})"


def to_text(a: Audit, show: int = 10) -> str:
    d = a.to_dict()
    out = [f"Collector audit against the emulator's truth (as of {d['as_of']})", "", *_table(d), ""]
    out += _details(d, show) + _faults(d, show) + _clients(a) + _verdicts(d)
    return "\n".join(out) + "\n"
