"""The model card says what a run measured and what it did not (undefined metrics, a run
that finished no epoch), and what it was trained on."""



def _info(task):
    from sst2.text.dataset_info import DatasetInfo

    return DatasetInfo("files", ("a", "b", "c") if task != "regression" else (), ("text",), {},
                       task=task)


def test_the_model_card_shows_undefined_metrics_and_runs_that_finished_no_epoch():
    """Cases 14 and 15: `| epoch |  |` for a run stopped in epoch 1; Pearson 0.0 recorded
    where it is undefined."""
    from sst2.serve.model_card import _evaluation_table

    lines = _evaluation_table({"epochs": [{"epoch": 1, "best": True, "val_loss": 0.5,
                                           "val_mse": 0.25}]}, _info("regression"))
    assert lines[0] == "| epoch | loss | pearson | spearman | mse |"
    assert lines[2] == "| 1 (kept) | 0.5000 | undefined | undefined | 0.2500 |"
    stopped = _evaluation_table({"epochs": []}, _info("multi_label"))
    assert len(stopped) == 1 and "No epoch finished" in stopped[0]
    assert "thresholds are not tuned" in stopped[0]


def test_the_card_names_the_variants_training_added():
    from sst2.run.config import TrainConfig
    from sst2.serve.model_card import _added

    config = TrainConfig.from_options(augment_typos=0.1)
    assert _added({"added_examples": 12818}, config) == (
        ", and 12,818 variants of training texts with their labels: identity terms swapped "
        "(`--augment_identity`) or a typo (`--augment_typos=0.1`)")
    assert _added({"added_examples": 0}, config) == _added({}, config) == ""
