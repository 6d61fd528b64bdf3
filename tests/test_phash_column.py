import imagehash
import numpy as np
import polars as pl
import pytest
from PIL import Image

from eclip.catalog.phash_column import parse_phash_column
from eclip.encoders.phash import hamming, phash_bytes
from eclip.errors import CatalogError

HEX = "94974f937d4c2433"  # first bit set: negative as a signed 64-bit integer
HEX_BYTES = [0x94, 0x97, 0x4F, 0x93, 0x7D, 0x4C, 0x24, 0x33]


def parse(values, dtype=None, column="image_phash", source="cat.csv"):
    table = pl.DataFrame({"id": list(range(len(values))), column: pl.Series(values, dtype=dtype)})
    return parse_phash_column(table, column, source)


def _noise_image(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (64, 48, 3), dtype=np.uint8), "RGB")


def test_hex_int_signed_int_and_decimal_text_give_the_same_bytes():
    unsigned = int(HEX, 16)
    signed = unsigned - 2**64
    assert signed < 0
    forms = [
        parse([HEX]),
        parse([" 0X" + HEX.upper() + "\t"]),
        parse([unsigned], pl.UInt64),
        parse([signed], pl.Int64),
        parse([str(unsigned)]),
        parse([str(signed)]),
    ]
    for codes, present in forms:
        assert codes.dtype == np.uint8 and codes.shape == (1, 8) and codes.flags.c_contiguous
        assert codes[0].tolist() == HEX_BYTES
        assert present.dtype == bool and present.tolist() == [True]


def test_matches_eclips_own_phash_of_an_image():
    hexes, own = [], []
    for seed in range(5):
        img = _noise_image(seed)
        hexes.append(str(imagehash.phash(img)))
        own.append(phash_bytes(img))
    codes, present = parse(hexes)
    assert present.all()
    np.testing.assert_array_equal(codes, np.stack(own))
    # bit order too: unpacked bits are imagehash's flattened 8x8 array, and distances agree
    for h, row in zip(hexes, codes):
        np.testing.assert_array_equal(np.unpackbits(row), imagehash.hex_to_hash(h).hash.reshape(-1).astype(np.uint8))
    assert hamming(codes[:1], codes[1:2])[0] == imagehash.hex_to_hash(hexes[0]) - imagehash.hex_to_hash(hexes[1])
    # the same image's hash as a signed integer (as a BIGINT column would hold it)
    as_int = [int.from_bytes(bytes.fromhex(h), "big", signed=True) for h in hexes]
    np.testing.assert_array_equal(parse(as_int, pl.Int64)[0], codes)


def test_one_bit_apart_pairs_are_found_by_hamming_pairs():
    from eclip.index.binary import hamming_pairs

    near = f"{int(HEX, 16) ^ 1:016x}"
    codes, _ = parse([HEX, "0000000000000000", near])
    pairs = hamming_pairs(codes, 1)
    assert list(zip(pairs.a.tolist(), pairs.b.tolist(), pairs.distance.tolist())) == [(0, 2, 1)]


def test_nulls_and_blank_cells_are_missing():
    codes, present = parse([HEX, None, "", "   ", "0000000000000000"])
    assert present.tolist() == [True, False, False, False, True]
    assert codes[0].tolist() == HEX_BYTES
    assert not codes[1:].any()
    codes, present = parse([None, 5, None], pl.Int64)
    assert present.tolist() == [False, True, False]
    assert codes[1].tolist() == [0, 0, 0, 0, 0, 0, 0, 5]
    codes, present = parse([None, None])  # an all-null column (dtype Null)
    assert codes.shape == (2, 8) and not present.any()
    codes, present = parse(["", None], pl.String)
    assert codes.shape == (2, 8) and not present.any()


def test_categorical_text_is_read():
    codes, present = parse([HEX, None], pl.Categorical)
    assert present.tolist() == [True, False] and codes[0].tolist() == HEX_BYTES


def test_decimal_column_with_sixteen_digit_numbers_stays_decimal():
    codes, _ = parse(["1234567890123456", "-1"])
    assert int.from_bytes(codes[0].tobytes(), "big") == 1234567890123456
    assert codes[1].tolist() == [255] * 8
    # every cell 16 digits: read as hex (documented)
    codes, _ = parse(["1234567890123456"])
    assert codes[0].tobytes() == bytes.fromhex("1234567890123456")


@pytest.mark.parametrize("bad", ["94974f937d4c243", "94974f937d4c243g", "94974f937d4c24330", "0x", "phash?"])
def test_bad_hex_names_file_row_column_and_value(bad):
    with pytest.raises(CatalogError) as err:
        parse([HEX, None, bad])
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("cat.csv: column 'image_phash', row 3 (data rows from 1, header not counted): ")
    assert repr(bad) in msg
    assert "16 hex digits" in msg and "Fix the cell" in msg


def test_mixing_hex_and_decimal_is_an_error_at_the_decimal_cell():
    with pytest.raises(CatalogError, match=r"row 2 \(.*\): '-5' is not a 64-bit pHash: expected 16 hex digits.*row 1"):
        parse([HEX, "-5"])


@pytest.mark.parametrize("bad", [str(2**64), str(-(2**63) - 1)])
def test_decimal_outside_64_bits(bad):
    with pytest.raises(CatalogError, match=rf"column 'image_phash', row 1 .*'{bad}'.*outside the 64-bit range"):
        parse([bad])


def test_huge_decimal_is_out_of_range_not_a_crash():
    with pytest.raises(CatalogError, match=r"row 2 .*\.\.\. is not a 64-bit pHash: it is outside the 64-bit range"):
        parse(["7", "9" * 5000])
    assert parse(["0" * 30 + "5"])[0][0].tolist() == [0, 0, 0, 0, 0, 0, 0, 5]


def test_float_column_is_refused():
    with pytest.raises(CatalogError, match=r"cat\.csv: column 'image_phash' has type Float64.*53 bits"):
        parse([1.5e18, None], pl.Float64)


def test_other_types_are_refused():
    with pytest.raises(CatalogError, match=r"column 'image_phash' has type Boolean.*16 hex digits"):
        parse([True], pl.Boolean)


def test_missing_column_lists_the_columns():
    table = pl.DataFrame({"id": [1], "title": ["tv"], "image_phash": [HEX]})
    with pytest.raises(
        CatalogError, match=r"cat\.csv: no pHash column 'phash'\. Columns are: id, title, image_phash\."
    ):
        parse_phash_column(table, "phash", "cat.csv")
