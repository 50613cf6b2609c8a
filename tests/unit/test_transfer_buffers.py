"""The node-wide budget of large transfer pieces (registry.api.buffers)."""

from __future__ import annotations

from registry.api.buffers import IN_FLIGHT, LARGE, SMALL, TransferBuffers


def test_large_pieces_while_the_budget_lasts_then_small_ones() -> None:
    buffers = TransferBuffers(2 * LARGE * IN_FLIGHT)
    with buffers.piece(None) as first, buffers.piece(10 * LARGE) as second:
        assert (first, second) == (LARGE, LARGE)
        with buffers.piece(None) as third:
            assert third == SMALL  # over budget: goes on with small pieces, never waits
        assert buffers.taken == 2 * LARGE * IN_FLIGHT
    assert buffers.taken == 0
    with buffers.piece(None) as again:
        assert again == LARGE


def test_a_transfer_takes_only_what_its_length_needs() -> None:
    buffers = TransferBuffers(LARGE * IN_FLIGHT)
    with buffers.piece(SMALL) as small:
        assert small == SMALL
        assert buffers.taken == 0  # small transfers cost nothing
    with buffers.piece(LARGE // 2) as half, buffers.piece(LARGE // 2) as other:
        assert (half, other) == (LARGE // 2, LARGE // 2)
    assert buffers.taken == 0


def test_the_budget_is_given_back_when_a_transfer_fails() -> None:
    buffers = TransferBuffers(LARGE * IN_FLIGHT)
    try:
        with buffers.piece(None):
            raise OSError("client went away")
    except OSError:
        pass
    assert buffers.taken == 0
