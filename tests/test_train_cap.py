"""The training cap samples labelled pairs; likely positives follow the queries it kept."""

from hardneg.mine import MinedPair
from hardneg.train import cap_pairs


def pair(query: int, positive: str, source: str = "labelled") -> MinedPair:
    return MinedPair(query_id=f"q{query}", query=f"query {query}", positive_id=positive, positive=positive,
                     negative_ids=["n"], negatives=["n"], negative_sources=["hard"], negative_scores=[0.1],
                     positive_score=1.0, positive_source=source)


LABELLED = [pair(q, f"d{q}") for q in range(10)]
LIKELY = [pair(0, "x0", "likely"), pair(0, "y0", "likely"), pair(5, "x5", "likely"), pair(7, "x7", "likely")]


def test_cap_keeps_labelled_count_and_only_likely_pairs_of_kept_queries():
    capped = cap_pairs(LABELLED + LIKELY, 4, seed=3)
    labelled = [p for p in capped if p.positive_source == "labelled"]
    likely = [p for p in capped if p.positive_source == "likely"]
    assert len(labelled) == 4
    kept_queries = {p.query_id for p in labelled}
    assert {p.query_id for p in likely} <= kept_queries
    assert likely == [p for p in LIKELY if p.query_id in kept_queries]


def test_cap_matches_plain_sampling_without_likely_pairs_and_is_seeded():
    assert cap_pairs(LABELLED, 4, seed=3) == cap_pairs(LABELLED + LIKELY, 4, seed=3)[:4]
    assert cap_pairs(LABELLED, 4, seed=3) == cap_pairs(LABELLED, 4, seed=3)
    assert cap_pairs(LABELLED + LIKELY, None, seed=3) == LABELLED + LIKELY
    assert cap_pairs(LABELLED, 50, seed=3) == LABELLED


def test_positive_source_survives_the_negatives_file_round_trip():
    row = LIKELY[1].as_dict()
    assert row["positive_source"] == "likely"
    assert MinedPair(**row) == LIKELY[1]
    old_row = {k: v for k, v in row.items() if k != "positive_source"}  # files written before the field existed
    assert MinedPair(**old_row).positive_source == "labelled"
