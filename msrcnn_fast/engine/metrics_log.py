"""Training metrics as JSON lines (one object per logged iteration)."""

import json
import os

from msrcnn_fast.engine.checkpoint import atomic_write


class MetricsLog:
    def __init__(self, path):
        self.path = path

    def truncate_after(self, iteration):
        """Drops records past `iteration`: a resumed run writes those iterations again."""
        if not os.path.isfile(self.path):
            return
        kept = []
        with open(self.path, encoding="utf-8") as file:
            for line in file:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a killed run
                    continue
                if record["iteration"] <= iteration:
                    kept.append(line)
        atomic_write(self.path, lambda file: file.write("".join(kept).encode()))

    def write(self, **record):
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")
