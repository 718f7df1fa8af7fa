"""Event options shared by every tab (a leaf module: the panels and ui/common import it)."""

# Every event that reaches the GPU shares this id (REFERENCE.md 7). Several may run at once:
# they meet in the one GPU queue (webui/serving/gpu_queue.py), which serialises the device work itself,
# takes sessions in turn and batches compatible requests -- so let up to a full batch in.
GPU = {"concurrency_id": "gpu", "concurrency_limit": 8}
# Events the page needs that are no part of the public API.
PRIVATE = {"api_visibility": "private"}
