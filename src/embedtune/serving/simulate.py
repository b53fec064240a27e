"""Simulated users for testing A/B set-ups end to end: they search over HTTP and click like people do.

Click model (position-based, the usual assumption in click modelling): a result at rank r is examined with
probability ``1 / (1 + 0.3 (r - 1))``; an examined relevant result is clicked with probability 0.9, an
examined irrelevant one with probability 0.03 (noise); after a click the user stops with probability 0.7.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import requests


def simulate(
    base_url: str,
    queries: Sequence[tuple[str, set[str]]],
    searches: int,
    *,
    k: int = 10,
    users: int = 50,
    seed: int = 0,
    timeout: float = 30.0,
) -> dict[str, int]:
    """Run ``searches`` searches (queries drawn at random, users at random) and click per the click model."""
    rng = random.Random(seed)
    session = requests.Session()
    stats = {"searches": 0, "clicks": 0, "relevant_clicks": 0}
    for _ in range(searches):
        text, relevant = rng.choice(queries)
        reply = session.get(f"{base_url}/search", params={"q": text, "k": k, "user": f"sim{rng.randrange(users)}"},
                            timeout=timeout)
        reply.raise_for_status()
        body = reply.json()
        stats["searches"] += 1
        for hit in body["results"]:
            if rng.random() > 1.0 / (1.0 + 0.3 * (hit["rank"] - 1)):
                continue
            if rng.random() < (0.9 if hit["id"] in relevant else 0.03):
                session.post(f"{base_url}/click", json={"impression_id": body["impression_id"], "doc_id": hit["id"]},
                             timeout=timeout).raise_for_status()
                stats["clicks"] += 1
                stats["relevant_clicks"] += hit["id"] in relevant
                if rng.random() < 0.7:
                    break
    return stats
