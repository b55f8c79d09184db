#!/usr/bin/env bash
# The infrastructure gate (make infra-check): checkov on infra/ (Bicep) and .github/workflows, offline.
# checkov exits 0 on Bicep it cannot parse, so its JSON summary is read too: any parsing error, no resources,
# or a .bicep file checkov did not see fails the gate. checkov lives in .venv-checkov (its dependencies must
# not move the app's pins); a stamp file makes re-runs skip the install.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV=.venv-checkov
STAMP="$VENV/.installed"
REPORT_DIR="${TMPDIR:-/tmp}"

if [ ! -f "$STAMP" ] || [ requirements-checkov.txt -nt "$STAMP" ]; then
    test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
    touch "$STAMP"
fi

bicep_json="$(mktemp "$REPORT_DIR/checkov-bicep.XXXXXX.json")"
actions_json="$(mktemp "$REPORT_DIR/checkov-actions.XXXXXX.json")"
trap 'rm -f "$bicep_json" "$actions_json"' EXIT

# --skip-download: no calls to Bridgecrew/Prisma Cloud; the checks bundled with the pinned version only.
status=0
"$VENV/bin/checkov" -d infra --framework bicep --skip-download --compact --output json \
    >"$bicep_json" || status=$?
"$VENV/bin/checkov" -d .github --framework github_actions --skip-download --compact --output json \
    >"$actions_json" || status=$?

"$VENV/bin/python" - "$bicep_json" "$actions_json" "$status" <<'PY'
import json
import pathlib
import sys

bicep_path, actions_path, status = sys.argv[1], sys.argv[2], int(sys.argv[3])
problems = []


def reports(path):
    text = pathlib.Path(path).read_text()
    if not text.strip():
        problems.append(f"{path}: checkov wrote no report")
        return []
    data = json.loads(text)
    # One framework gives one object; checkov writes a list when several ran, and a bare summary when
    # there was nothing to scan.
    return data if isinstance(data, list) else [data]


def check(label, data, *, count_resources):
    if not data or any("summary" not in report or "results" not in report for report in data):
        problems.append(f"{label}: checkov scanned nothing")
        return
    for report in data:
        summary = report["summary"]
        results = report["results"]
        print(
            f"{label} ({report.get('check_type')}): passed={summary.get('passed')} failed={summary.get('failed')} "
            f"skipped={summary.get('skipped')} parsing_errors={summary.get('parsing_errors')} "
            f"resources={summary.get('resource_count')}"
        )
        for failed in results.get("failed_checks", []):
            problems.append(f"{label}: FAILED {failed['check_id']} {failed['check_name']} ({failed['file_path']})")
        for skipped in results.get("skipped_checks", []):
            print(f"  skipped {skipped['check_id']} on {skipped['resource']} ({skipped['file_path']})")
        for path in results.get("parsing_errors", []):
            problems.append(f"{label}: checkov could not parse {path}")
        if summary.get("parsing_errors") and not results.get("parsing_errors"):
            problems.append(f"{label}: {summary['parsing_errors']} parsing error(s)")
        if count_resources and not summary.get("resource_count"):
            problems.append(f"{label}: resource_count is 0")
        if not summary.get("passed"):
            problems.append(f"{label}: no check passed, so nothing was really checked")


check("infra", reports(bicep_path), count_resources=True)
# Every Bicep file must parse with checkov's own parser (pycep) and declare something: a file checkov skipped
# silently would otherwise go unchecked.
from pycep import BicepParser  # noqa: E402 - only in .venv-checkov

bicep_files = sorted(pathlib.Path("infra").rglob("*.bicep"))
if not bicep_files:
    problems.append("infra: no .bicep files")
for path in bicep_files:
    try:
        parsed = BicepParser().parse(file_path=path)
    except Exception as exc:  # pycep raises lark errors of several kinds
        problems.append(f"infra: {path} does not parse: {str(exc).splitlines()[0]}")
        continue
    if not parsed.get("resources") and not parsed.get("modules"):
        problems.append(f"infra: {path} declares no resource or module")
# Least privilege, as the templates promise: no broad role by id, and every role assignment named with guid(...)
# and preceded by a comment naming its role.
BROAD_ROLES = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
}
for path in bicep_files:
    lines = path.read_text().splitlines()
    for role_id, role in BROAD_ROLES.items():
        if any(role_id in line.lower() for line in lines):
            problems.append(f"infra: {path} assigns {role}")
    for number, line in enumerate(lines):
        if "'Microsoft.Authorization/roleAssignments@" in line and line.startswith("resource "):
            if not lines[number - 1].startswith("//"):
                problems.append(f"infra: {path}:{number + 1}: role assignment without a comment naming its role")
            if not lines[number + 1].strip().startswith("name: guid("):
                problems.append(f"infra: {path}:{number + 1}: role assignment not named with guid(...)")
workflows = sorted(pathlib.Path(".github/workflows").glob("*.y*ml"))
if not workflows:
    problems.append("workflows: no files in .github/workflows")
check("workflows", reports(actions_path), count_resources=False)
if status not in (0, 1):
    problems.append(f"checkov exited with status {status}")
if problems:
    print("\n".join(["infra-check FAILED:", *problems]), file=sys.stderr)
    sys.exit(1)
print(f"infra-check: checkov clean on {len(bicep_files)} Bicep files and {len(workflows)} workflow(s)")
PY
