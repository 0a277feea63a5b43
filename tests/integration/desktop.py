"""A stand-in for the Verstak desktop client's sync loop (SYNC.md 8),
written from the contract so the integration tests act the protocol out
the way the real client does: pull first with its page checks, push in
batches of 100 that halve on too_many_operations, mark only `accepted`
ops as pushed, pull again."""
import uuid


class SyncError(Exception):
    pass


class Desktop:
    def __init__(self, stack, token, device_id):
        self.stack = stack
        self.token = token
        self.device_id = device_id
        self.cursor = 0
        self.applied = []          # ops handled, in order
        self.queue = []            # unpushed local ops
        self.pushed = set()
        self.conflicts = []

    def call(self, path, body):
        r = self.stack.post(path, body, headers={
            "Authorization": "Bearer " + self.token,
            "Content-Type": "application/json"})
        if r.status >= 500:
            raise SyncError(f"{path}: HTTP {r.status} {r.body[:200]!r}")
        return r

    def pull_all(self):
        while True:
            start = self.cursor
            r = self.call("/api/v1/sync/pull", {"since_sequence": self.cursor,
                                                "page_limit": 0})
            if r.status != 200:
                raise SyncError(f"pull: {r.status} {r.body!r}")
            page = r.json()
            last = start
            for op in page["ops"]:
                seq = op["server_sequence"]
                if seq <= self.cursor:
                    continue  # repeated or out of order: skipped
                self.applied.append(op)
                self.cursor = seq
                last = seq
            if page["page_last_sequence"] != last:
                raise SyncError("page_last_sequence is not the last op handled")
            # D41: whenever ops are returned (an empty page keeps the
            # cursor, which may be above the scope's maximum)
            if page["ops"] and page["server_sequence"] < page["page_last_sequence"]:
                raise SyncError("server_sequence below page_last_sequence")
            if not page["has_more"]:
                return
            if page["page_last_sequence"] <= start:
                raise SyncError("has_more without progress")

    def queue_ops(self, n, entity_prefix="Docs/note", op_type="create"):
        for i in range(n):
            self.queue.append({
                "op_id": str(uuid.uuid4()),
                "entity_type": "file",
                "entity_id": f"{entity_prefix}{len(self.queue)}-{i}.md",
                "op_type": op_type,
                "payload_json": '{"path":"x","contentHash":"h","content":"hello"}',
                "client_sequence": len(self.queue) + 1,
                "last_seen_server_seq": 0,
                "created_at": "2026-11-25T00:00:00Z",
            })

    def push_all(self):
        for op in self.queue:
            op["last_seen_server_seq"] = self.cursor
        batch = 100
        i = 0
        while i < len(self.queue):
            ops = self.queue[i:i + batch]
            r = self.call("/api/v1/sync/push", {"device_id": self.device_id,
                                                "ops": ops})
            if r.status == 413 and r.json().get("code") == "too_many_operations" \
                    and len(ops) > 1:
                batch = max(1, len(ops) // 2)
                continue
            if r.status != 200:
                raise SyncError(f"push: {r.status} {r.body!r}")
            j = r.json()
            assert j["count"] == len(j["accepted"])
            self.pushed.update(j["accepted"])
            self.conflicts.extend(j["conflicts"])
            i += len(ops)
        self.queue = [op for op in self.queue if op["op_id"] not in self.pushed]

    def sync(self):
        self.pull_all()
        pre_push = self.cursor
        self.push_all()
        self.cursor = pre_push
        self.pull_all()
