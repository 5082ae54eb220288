"""Reply boundaries found without decoding, at every split point."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from nomadkv.resp.framing import split_replies
from nomadkv.resp.reply import Array, Double, Map, SetReply, Verbatim, encode_value

leaf = st.one_of(
    st.binary(max_size=20),
    st.integers(-(2**63), 2**63 - 1),
    st.none(),
    st.floats(allow_nan=False).map(Double),
    st.binary(max_size=10).map(Verbatim),
)
values = st.recursive(
    leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(Array),
        st.lists(children, max_size=4).map(SetReply),
        st.lists(st.tuples(st.binary(max_size=5), children), max_size=3).map(Map),
    ),
    max_leaves=12,
)


@given(st.lists(values, min_size=1, max_size=5), st.booleans(), st.data())
def test_split_finds_every_reply_at_every_cut(replies, resp3, data) -> None:
    encoded = [encode_value(v, resp3) for v in replies]
    stream = b"".join(encoded)
    cut = data.draw(st.integers(0, len(stream)))
    found, consumed = split_replies(stream[:cut])
    assert b"".join(found) == stream[:consumed]
    assert found == encoded[: len(found)]
    rest, _ = split_replies(stream[consumed:])
    assert found + rest == encoded
    assert split_replies(b"+OK\r\n$2\r\nOK\r\n")[0][0] == b"+OK\r\n"
