import pytest

from ptnl.report import reference


def test_every_table_is_present_and_in_range():
    df = reference.table()
    assert set(df.table) == set(reference.TABLES)
    assert df.accuracy.between(0, 100).all()


def test_subtables_are_the_appendix_rows():
    # Table 1 is the 4-dataset excerpt of Table 6; transcription must agree cell by cell.
    t1 = reference.table("Table 1").drop(columns="table")
    t6 = reference.table("Table 6").drop(columns="table")
    merged = t1.merge(t6, on=["dataset", "method", "noise_rate"], suffixes=("_1", "_6"))
    assert len(merged) == len(t1) == 4 * 4 * 4
    assert (merged.accuracy_1 == merged.accuracy_6).all()


def test_spot_values_match_the_paper():
    t = reference.table("Table 1")
    row = t[(t.dataset == "OxfordPets") & (t.method == "prompt") & (t.noise_rate == 0.5)]
    assert row.accuracy.item() == 73.13
    t5 = reference.table("Table 5")
    assert t5[(t5.dataset == "DTD") & (t5.method == "robust_upl_gce")].accuracy.item() == 46.69
    t8 = reference.table("Table 8")
    assert t8[t8.dataset == "FGVCAircraft"].accuracy.item() == 3.43


def test_unknown_table_is_a_clear_error():
    with pytest.raises(ValueError, match="Table 1"):
        reference.table("Table 42")
