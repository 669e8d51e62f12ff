"""Choosing the OpenVINO artifact's setting (`sst2.serve.openvino.settings`): fastest
first, agreement measured only as far as needed, and the most agreeing when none agrees
enough."""

from sst2.serve.openvino.settings import AGREEMENT_BOUND, Setting, choose, rates, speed_facts


def test_the_fastest_that_agrees_is_kept_and_slower_ones_are_not_measured():
    measured = []

    def agreement_of(setting):
        measured.append(setting.name)
        return {"int8": 0.98, "int8_weights": 0.996, "none": 1.0}[setting.quantize]

    tried = [Setting("none", "LATENCY", rate=100), Setting("int8", "THROUGHPUT", rate=140),
             Setting("int8_weights", "THROUGHPUT", rate=120)]
    kept = choose(tried, agreement_of)
    assert (kept.quantize, kept.hint) == ("int8_weights", "THROUGHPUT")
    assert measured == ["int8, throughput", "int8_weights, throughput"]
    facts = speed_facts(kept, tried, saved_model_rate=50.0, cpu="a CPU", texts=256)
    assert facts["ratio"] == 2.4 and facts["hint"] == "THROUGHPUT" and facts["cpu"] == "a CPU"
    assert [s["answers_equal"] for s in facts["settings"]] == [None, 0.98, 0.996]


def test_when_none_agrees_enough_the_most_agreeing_is_kept():
    tried = [Setting("int8", "LATENCY", rate=140, answers_equal=0.97),
             Setting("none", "LATENCY", rate=100, answers_equal=0.99)]
    assert all(s.answers_equal < AGREEMENT_BOUND for s in tried)
    assert choose(tried).quantize == "none"


def test_rates_time_every_answerer_on_the_same_batches():
    calls = {"a": [], "b": []}
    columns = [[f"text {i}" for i in range(70)], [f"pair {i}" for i in range(70)]]
    answerers = {name: (lambda name: lambda *batch: calls[name].append(batch))(name)
                 for name in calls}
    rate = rates(answerers, columns, batch_size=32, rounds=2)
    assert set(rate) == {"a", "b"} and all(r > 0 for r in rate.values())
    # A warm-up batch, then 3 batches (32, 32, 6) per round, both columns each time.
    assert calls["a"] == calls["b"] and len(calls["a"]) == 1 + 2 * 3
    assert [len(batch[0]) for batch in calls["a"][1:4]] == [32, 32, 6]
    assert calls["a"][3][1][-1] == "pair 69"
