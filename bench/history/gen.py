"""Make N run folders for the history benchmark from one real journal: each run gets its own id
(one per minute back from now), one of 10 runbook names, staging or production, and an end of
succeeded, rolled_back or failed, so filters have something to choose between."""
import datetime, json, os, sys

seed_path, runs_dir, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
seed = [json.loads(line) for line in open(seed_path)]
os.makedirs(runs_dir, exist_ok=True)
now = datetime.datetime.now(datetime.timezone.utc)
statuses = [("succeeded", 0), ("rolled_back", 3), ("failed", 1)]
for i in range(count):
    when = now - datetime.timedelta(minutes=i)
    name = f"bench-{i % 10}"
    run_id = when.strftime("%Y%m%dT%H%M%S.%f")[:-3] + f"Z-{name}-{i % 65536:04x}"
    status, code = statuses[(i // 10) % 3]
    lines = []
    for event in seed:
        e = dict(event)
        e["ts"] = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        if e["event"] == "run_started":
            e["run_id"], e["name"] = run_id, name
            e["env"] = "production" if (i // 30) % 2 else "staging"
        elif e["event"] == "run_finished":
            e["status"], e["exit_code"] = status, code
        lines.append(json.dumps(e, separators=(",", ":")))
    folder = os.path.join(runs_dir, run_id)
    os.mkdir(folder)
    with open(os.path.join(folder, "journal.jsonl"), "w") as f:
        f.write("\n".join(lines) + "\n")
