"""Whether an alert of deploy/prometheus/alerts.yml fires on what a real node exposed: the node's
scrape becomes the input series of a `promtool test rules` case, which evaluates the rule file
as Prometheus would and compares the alerts that fire with the ones expected."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from tests.tools import require

ALERTS = Path(__file__).resolve().parents[1] / "deploy" / "prometheus" / "alerts.yml"
SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")
INSTANCE = "node"
JOB = "modelyard"


def samples(scrape: str, names: tuple[str, ...]) -> dict[str, str]:
    """The scrape's samples of `names`: series (as Prometheus stores it, with the `instance`
    and `job` labels a scrape adds) -> value."""
    found = {}
    for line in scrape.splitlines():
        sample = SAMPLE.match(line)
        if sample is None or sample["name"] not in names:
            continue
        labels = ",".join(filter(None, [sample["labels"], f'instance="{INSTANCE}",job="{JOB}"']))
        found[f"{sample['name']}{{{labels}}}"] = sample["value"]
    return found


def series(scrape: str, names: tuple[str, ...], before: str | None) -> list[dict[str, str]]:
    """The scrape's samples of `names` as promtool input series, each holding its value for 3
    minutes; with `before` (an earlier scrape), that scrape's value first, a minute earlier."""
    earlier = samples(before, names) if before is not None else {}
    return [
        {"series": name, "values": " ".join(filter(None, [earlier.get(name), f"{value}x3"]))}
        for name, value in samples(scrape, names).items()
    ]


def expected(alertname: str, label: str, peer: str, value: str) -> dict[str, object]:
    """The alert as it fires for `peer` (the value of `label`): the rule's labels and its
    annotations rendered."""
    (rule,) = [
        r
        for group in yaml.safe_load(ALERTS.read_text())["groups"]
        for r in group["rules"]
        if r.get("alert") == alertname
    ]
    rendered = {
        key: text.replace(f"{{{{ $labels.{label} }}}}", peer)
        .replace("{{ $labels.instance }}", INSTANCE)
        .replace("{{ $value }}", value)
        for key, text in rule.get("annotations", {}).items()
    }
    labels = {**rule.get("labels", {}), label: peer, "instance": INSTANCE, "job": JOB}
    return {"exp_labels": labels, "exp_annotations": rendered}


def assert_fires(
    scrape: str,
    alertname: str,
    names: tuple[str, ...],
    firing: dict[str, str],
    tmp_path: Path,
    label: str = "peer",
    before: str | None = None,
) -> None:
    """`alertname` fires on the scrape's samples of `names` exactly for the values of `label`
    in `firing` (-> the expression's value as Prometheus prints it), and for no other; an
    empty `firing` says it does not fire. `before`: an earlier scrape, for rules on change."""
    promtool = require("promtool")
    case = {
        "rule_files": [str(ALERTS)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series(scrape, names, before),
                "alert_rule_test": [
                    {
                        "eval_time": "2m",
                        "alertname": alertname,
                        "exp_alerts": [expected(alertname, label, p, v) for p, v in firing.items()],
                    }
                ],
            }
        ],
    }
    path = tmp_path / f"{alertname}-{len(list(tmp_path.glob('*.test.yml')))}.test.yml"
    path.write_text(yaml.safe_dump(case))
    result = subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
