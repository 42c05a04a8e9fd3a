"""The end-to-end ack payload: exact ranges, round trip, refusal of garbage."""

from hypothesis import given
from hypothesis import strategies as st

from citygate.contract.acks import MAX_RANGES, decode_ack, encode_acks, to_ranges


def test_ranges_merge_neighbours_only():
    assert to_ranges([5, 1, 2, 3, 7, 8, 3]) == [(1, 3), (5, 5), (7, 8)]
    assert to_ranges([]) == []


@given(st.sets(st.integers(min_value=0, max_value=5000), max_size=800))
def test_round_trip_covers_exactly_the_seqs(seqs):
    covered = set()
    for payload in encode_acks(seqs):
        ranges = decode_ack(payload)
        assert ranges is not None and len(ranges) <= MAX_RANGES
        for a, b in ranges:
            covered.update(range(a, b + 1))
    assert covered == seqs


def test_garbage_is_not_an_ack():
    for bad in (
        b"",
        b"{",
        b'{"seq": 3}',
        b'{"ranges": [[3]]}',
        b'{"ranges": [[5, 2]]}',
        b'{"ranges": [["a", 2]]}',
        b'{"ranges": [[1.0, 2]]}',
        b"[]",
    ):
        assert decode_ack(bad) is None
