from __future__ import annotations

import pytest
import torch

from hardneg.losses import TripletMarginLoss, triplet_margin


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
