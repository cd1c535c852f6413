from __future__ import annotations

import pytest
import torch

from hardneg.losses.custom import TripletMarginLoss, triplet_margin


def test_zero_when_positive_beats_every_negative_by_the_margin():
    pos = torch.tensor([3.0, 2.5])
    negs = torch.tensor([[1.0, 1.5], [2.0, 0.0]])  # (n=2, batch=2); all gaps >= 1
    assert triplet_margin(pos, negs, 1.0).item() == 0.0


def test_value_and_gradient_by_hand():
    pos = torch.tensor([1.0, 0.0], requires_grad=True)
    negs = torch.tensor([[0.5, -2.0], [1.2, 0.3]], requires_grad=True)
    loss = triplet_margin(pos, negs, 1.0)
    # hinges: row0: 1-1+.5=.5, 1-1+1.2=1.2 ; row1: 1-0-2=-1 -> 0, 1-0+.3=1.3 ; mean over 4 = 3.0/4
    assert loss.item() == pytest.approx(0.75)
    loss.backward()
    # each active hinge contributes -1/4 to its positive and +1/4 to its negative
    assert pos.grad.tolist() == pytest.approx([-0.5, -0.25])
    assert negs.grad.flatten().tolist() == pytest.approx([0.25, 0.0, 0.25, 0.25])


def test_loss_module_on_a_tiny_cross_encoder(tiny_bert):
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(tiny_bert, num_labels=1, max_length=32)
    loss = TripletMarginLoss(model, margin=1.0)
    inputs = [["q one", "q two"], ["pos one", "pos two"], ["neg a", "neg b"], ["neg c", "neg d"]]
    value = loss(inputs, None)
    value.backward()
    assert value.item() >= 0
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    # the module must score each column against its own query, in order
    with torch.no_grad():
        direct = torch.tensor(model.predict([("q one", "neg c"), ("q two", "neg d")], activation_fn=torch.nn.Identity()))
        via_loss = loss.score(["q one", "q two"], ["neg c", "neg d"])
    assert torch.allclose(direct.float(), via_loss.float(), atol=1e-5)
    with pytest.raises(ValueError, match="needs \\(query, positive, negative_1"):
        loss(inputs[:2], None)


def test_rejects_multi_label_models(tiny_bert):
    from sentence_transformers import CrossEncoder

    with pytest.raises(ValueError, match="num_labels=1"):
        TripletMarginLoss(CrossEncoder(tiny_bert, num_labels=2))


# --- Every loss hardneg offers, on scripted logits: the model's score of each (query, doc) is fixed by a table,
# so each loss value can be computed by hand.

import math

from hardneg.losses import distill_targets, loss_dataset, make_loss
from hardneg.mine import MinedPair

LOGITS = {("q1", "p1"): 2.0, ("q1", "n1"): 0.5, ("q1", "n2"): -1.0,
          ("q2", "p2"): 0.0, ("q2", "n3"): 1.0, ("q2", "n4"): 0.0}


@pytest.fixture
def scripted(tiny_bert):
    """A real CrossEncoder whose scores come from LOGITS (gradients flow to the table's tensor)."""
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(tiny_bert, num_labels=1, max_length=32)
    table = {k: torch.tensor(v, requires_grad=True) for k, v in LOGITS.items()}
    model.preprocess = lambda pairs, prompt=None, task=None: {"logits": torch.stack([table[tuple(p)] for p in pairs])}
    model.forward = lambda features, **kwargs: {"scores": features["logits"].view(-1, 1)}
    return model, table


def _ce(row: list[float], target: int = 0) -> float:
    return -row[target] + math.log(sum(math.exp(v) for v in row))


def test_mnrl_is_softmax_over_positive_and_its_negatives(scripted):
    model, table = scripted
    loss = make_loss("mnrl", model, num_negatives=2)
    value = loss([["q1", "q2"], ["p1", "p2"], ["n1", "n3"], ["n2", "n4"]], None)
    sig = lambda x: 10 / (1 + math.exp(-x))
    expected = (_ce([sig(2.0), sig(0.5), sig(-1.0)]) + _ce([sig(0.0), sig(1.0), sig(0.0)])) / 2
    assert value.item() == pytest.approx(expected, rel=1e-5)
    value.backward()
    assert table[("q1", "p1")].grad < 0 < table[("q2", "n3")].grad  # push the positive up, the negative down


def test_bce_weights_positives_by_the_number_of_negatives(scripted):
    model, _ = scripted
    loss = make_loss("bce", model, num_negatives=2)
    value = loss([["q1", "q1", "q1"], ["p1", "n1", "n2"]], torch.tensor([1.0, 0.0, 0.0]))
    softplus = lambda x: math.log1p(math.exp(x))
    expected = (2 * softplus(-2.0) + softplus(0.5) + softplus(-1.0)) / 3
    assert value.item() == pytest.approx(expected, rel=1e-5)


def test_listnet_and_lambda_prefer_the_positive_first(scripted):
    model, _ = scripted
    listnet = make_loss("listnet", model, num_negatives=2)
    labels = [torch.tensor([1.0, 0.0, 0.0])]
    value = listnet([["q1"], [["p1", "n1", "n2"]]], labels)
    target = [math.e / (math.e + 2), 1 / (math.e + 2), 1 / (math.e + 2)]
    logits = [2.0, 0.5, -1.0]
    log_z = math.log(sum(math.exp(v) for v in logits))
    assert value.item() == pytest.approx(-sum(t * (v - log_z) for t, v in zip(target, logits)), rel=1e-5)
    lam = make_loss("lambda", model, num_negatives=2)
    good = lam([["q1"], [["p1", "n1", "n2"]]], labels).item()   # positive ranked first
    bad = lam([["q2"], [["n3", "p2", "n4"]]], labels).item()    # label-1 doc scored below another
    assert 0 <= good < bad


def test_margin_mse_matches_teacher_margins(scripted):
    model, _ = scripted
    loss = make_loss("margin_mse", model, num_negatives=2)
    teacher = torch.tensor([[1.0, 4.0]])  # teacher margins pos-n1, pos-n2
    value = loss([["q1"], ["p1"], ["n1"], ["n2"]], teacher)
    assert value.item() == pytest.approx(((1.5 - 1.0) ** 2 + (3.0 - 4.0) ** 2) / 2)


def _pair(q, negs, scores=None, pos_score=None):
    return MinedPair(q, f"text {q}", f"p{q}", f"pos {q}", [f"n{i}" for i in range(len(negs))], negs,
                     ["hard"] * len(negs), scores or [None] * len(negs), pos_score)


def test_loss_dataset_layouts():
    pairs = [_pair("a", ["x", "y"], [0.5, None], 2.0), _pair("b", ["z"])]
    tup, left = loss_dataset(pairs, "mnrl", 2)
    assert tup.column_names == ["query", "positive", "negative_1", "negative_2"] and len(tup) == 1 and left == 1
    lst, left = loss_dataset(pairs, "lambda", 2)
    assert lst["docs"] == [["pos a", "x", "y"], ["pos b", "z"]] and lst["labels"][1] == [1.0, 0.0] and left == 0
    bce, _ = loss_dataset(pairs, "bce", 2)
    assert bce["label"] == [1.0, 0.0, 0.0, 1.0, 0.0]
    teacher = distill_targets(pairs, scale=2.0)
    assert teacher == [[4.0, 1.0, 1.0], None]  # the random negative gets the weakest hard score
    mse, left = loss_dataset(pairs, "margin_mse", 2, teacher)
    assert mse["label"] == [[3.0, 3.0]] and left == 1
    with pytest.raises(ValueError, match="Unknown loss"):
        make_loss("nope", None, 2)


def test_mnrl_with_in_batch_negatives_adds_other_rows_documents(scripted):
    model, _ = scripted
    inputs = [["q1", "q2"], ["p1", "p2"], ["n1", "n3"], ["n2", "n4"]]
    # every other document of the batch, scored for each query: 0 unless LOGITS says otherwise
    table = {k: torch.tensor(v) for k, v in LOGITS.items()}
    model.preprocess = lambda pairs, prompt=None, task=None: {
        "logits": torch.stack([table.get(tuple(p), torch.tensor(0.0)) for p in pairs])}
    hard_only = make_loss("mnrl", model, num_negatives=2)(inputs, None).item()
    with_in_batch = make_loss("mnrl", model, num_negatives=2, in_batch_negatives=1)(inputs, None).item()
    assert math.isfinite(with_in_batch) and with_in_batch > hard_only  # one more competitor per query


def test_registry_names_match_the_config_literal():
    from typing import get_args

    from hardneg.config import TrainConfig
    from hardneg.losses import LOSS_HELP, LOSSES, REGISTRY

    assert LOSSES == get_args(TrainConfig.model_fields["loss"].annotation) == tuple(REGISTRY) == tuple(LOSS_HELP)
    assert all(LOSS_HELP[name] for name in LOSSES)


def test_registry_layouts_size_batches_and_need_teachers():
    from hardneg.losses import REGISTRY, loss_spec

    # bce rows are single (query, passage) pairs: a query with n negatives takes 1 + n rows, each one sequence
    assert loss_spec("bce").layout.rows_per_query(3) == 4 and loss_spec("bce").layout.sequences_per_row(3) == 1
    assert all(spec.layout.rows_per_query(3) == 1 and spec.layout.sequences_per_row(3) == 4
               for name, spec in REGISTRY.items() if name != "bce")
    assert [name for name, spec in REGISTRY.items() if spec.needs_teacher] == ["margin_mse"]
    with pytest.raises(ValueError, match="Unknown loss 'nope'"):
        loss_spec("nope")
    pairs = [_pair("a", ["x", "y"], [0.5, None], 2.0)]
    for name, spec in REGISTRY.items():
        teacher = distill_targets(pairs) if spec.needs_teacher else None
        dataset, left = loss_dataset(pairs, name, 2, teacher)
        assert len(dataset) == spec.layout.rows_per_query(2) and left == 0, name
