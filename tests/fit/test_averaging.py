"""Weight averaging: the update rule, swapping for evaluation, checkpoints, restore for serving."""

import numpy as np
import pytest
import tensorflow as tf

from sst2.fit.averaging import ExponentialMovingAverage

# precision: CI runs these again with SST2_AUTO_PRECISION=bfloat16.
pytestmark = pytest.mark.precision


def test_update_follows_the_ramped_decay():
    variable = tf.Variable([0.0, 0.0])
    average = ExponentialMovingAverage(decay=0.5)
    average.build([variable])
    expected = np.zeros(2)
    for n, value in enumerate([[1.0, 2.0], [3.0, -1.0], [5.0, 0.0], [7.0, 4.0]]):
        variable.assign(value)
        average.update([variable])
        decay = min(0.5, (1 + n) / (10 + n))  # 0.1, 0.18..., then 0.5
        expected = decay * expected + (1 - decay) * np.array(value)
        np.testing.assert_allclose(average.averages[0].numpy(), expected, rtol=1e-6)
    assert int(average.updates.numpy()) == 4
    with pytest.raises(ValueError, match="decay"):
        ExponentialMovingAverage(decay=1.0)


def test_swapped_in_shows_the_average_then_restores_the_raw_weights():
    variable = tf.Variable([1.0])
    average = ExponentialMovingAverage(decay=0.9)
    average.build([variable])
    variable.assign([11.0])
    average.update([variable])  # first update: decay 0.1 -> 0.1 * 1 + 0.9 * 11 = 10
    with average.swapped_in([variable]):
        np.testing.assert_allclose(variable.numpy(), [10.0], rtol=1e-6)
    np.testing.assert_allclose(variable.numpy(), [11.0])
    np.testing.assert_allclose(average.averages[0].numpy(), [10.0], rtol=1e-6)
    average.copy_to([variable])
    np.testing.assert_allclose(variable.numpy(), [10.0], rtol=1e-6)


@pytest.mark.slow
def test_a_run_with_an_average_exports_the_average(tiny_preset, tiny_data_dir, tmp_path):
    from sst2.run.config import TrainConfig
    from sst2.serve.evaluation import evaluate
    from sst2.serve.trained import restore
    from tests.helpers import train as run

    config = TrainConfig.from_options(
        model_dir=str(tmp_path / "run"), preset=tiny_preset, data_dir=tiny_data_dir, epochs=1,
        batch_size=8, sequence_length=16, head_hidden=8, ema_decay=0.9, export=False,
        progress=False)
    result = run(config)
    trained = restore(config.run.model_dir, "latest")
    reader = tf.train.load_checkpoint(trained.checkpoint_path)
    prefix = "weight_average/averages/"
    averages = {int(n[len(prefix):].split("/")[0]): reader.get_tensor(n)
                for n in reader.get_variable_to_shape_map() if n.startswith(prefix)}
    assert len(averages) == len(trained.head.trainable_variables) > 0
    for i, variable in enumerate(trained.head.trainable_variables):
        np.testing.assert_array_equal(variable.numpy(), averages[i])
    # The run's final evaluation is the restored (averaged) model's.
    evaluated = evaluate(trained)
    assert evaluated["accuracy"] == pytest.approx(result["test"]["accuracy"])
    # The run reads float16 cached features padded to its buckets; evaluate serves
    # float32 features padded to each batch's longest sentence.
    assert evaluated["loss"] == pytest.approx(result["test"]["loss"], rel=1e-4)
