import json

import polars as pl
import pytest

from eclip.catalog import load_catalog, pick_text_columns, read_table
from eclip.errors import CatalogError


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(CatalogError, match=r"nope\.csv: catalog file not found"):
        load_catalog(tmp_path / "nope.csv")


def test_unknown_format_lists_known_ones(tmp_path):
    f = write(tmp_path / "cat.xlsx", "id,title\n1,a\n")
    with pytest.raises(CatalogError, match=r"unknown catalog format '\.xlsx'.*\.csv.*\.jsonl.*\.parquet"):
        load_catalog(f)


def test_missing_id_column(tmp_path):
    f = write(tmp_path / "cat.csv", "sku,title\n1,Sony TV\n")
    with pytest.raises(CatalogError, match=r"no id column 'id'\. Columns are: sku, title\. Choose one with --id-col"):
        load_catalog(f)


def test_missing_text_column(tmp_path):
    f = write(tmp_path / "cat.csv", "id,title\n1,Sony TV\n")
    with pytest.raises(CatalogError, match=r"no text column 'label'.*--text-cols"):
        load_catalog(f, text_cols=["title", "label"])


def test_no_title_like_column(tmp_path):
    f = write(tmp_path / "cat.csv", "id,price\n1,3.0\n")
    with pytest.raises(CatalogError, match=r"no title-like column found.*--text-cols"):
        load_catalog(f)


def test_duplicate_ids_name_the_id_and_rows(tmp_path):
    f = write(tmp_path / "cat.csv", "id,title\n7,a\n8,b\n7,c\n")
    with pytest.raises(CatalogError, match=r"1 repeated id; e\.g\. '7' is in rows 1, 3"):
        load_catalog(f)


def test_empty_id_names_the_row(tmp_path):
    f = write(tmp_path / "cat.csv", "id,title\n1,a\n,b\n")
    with pytest.raises(CatalogError, match=r"column 'id' is empty in row 2"):
        load_catalog(f)


def test_nested_column_is_a_wrong_dtype(tmp_path):
    f = write(tmp_path / "cat.jsonl", json.dumps({"id": 1, "title": ["a", "b"]}) + "\n")
    with pytest.raises(CatalogError, match=r"column 'title' has type List.*one value per row"):
        load_catalog(f)


def test_corrupt_parquet_is_a_clear_error(tmp_path):
    f = write(tmp_path / "cat.parquet", "this is not parquet")
    with pytest.raises(CatalogError, match=r"cat\.parquet: cannot be read as PARQUET"):
        load_catalog(f)


def test_empty_file(tmp_path):
    f = write(tmp_path / "cat.csv", "")
    with pytest.raises(CatalogError, match="the file is empty"):
        load_catalog(f)


def test_empty_text_rows_are_reported_not_dropped(tmp_path):
    f = write(tmp_path / "cat.csv", "id,title,brand\n1,Sony TV,Sony\n2,,\n3,  ,\n4,Bose,\n")
    cat = load_catalog(f)
    assert cat.ids == ["1", "2", "3", "4"]
    assert cat.empty_rows == [1, 2]
    assert cat.usable == [0, 3]
    assert cat.texts[0] == "Sony TV Sony"


def test_three_formats_read_alike(tmp_path):
    df = pl.DataFrame({"id": [10, 11], "name": ["Sony Turntable PSLX350H", "Bose AM5"], "manufacturer": ["Sony", None]})
    df.write_csv(tmp_path / "c.csv")
    df.write_parquet(tmp_path / "c.parquet")
    df.write_ndjson(tmp_path / "c.jsonl")
    cats = [load_catalog(tmp_path / f"c.{ext}") for ext in ("csv", "parquet", "jsonl")]
    for cat in cats:
        assert cat.ids == ["10", "11"]
        assert cat.text_cols == ("name", "manufacturer")
        assert cat.texts == ["Sony Turntable PSLX350H Sony", "Bose AM5"]


def test_csv_ids_keep_leading_zeros(tmp_path):
    f = write(tmp_path / "cat.csv", "id,title\n007,a\n")
    assert read_table(f)["id"].to_list() == ["007"]


def test_pick_text_columns_prefers_title_then_brand():
    assert pick_text_columns(["id", "Brand", "productDisplayName", "price"]) == ["productDisplayName", "Brand"]
    assert pick_text_columns(["id", "price"]) == []
