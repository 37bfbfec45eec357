"""The network built from its settings: the documented layer stack, and the previous one."""

import pytest

from model import ModelConfig, build_model


def test_the_global_pools_beside_the_lstm_are_a_setting():
    model = build_model(ModelConfig(global_pooling=True, spectrum_harmonics=0), sequence_length=3197)
    names = [layer.name for layer in model.layers]
    for name in ("conv1", "pool1", "conv3", "pool3", "lstm", "strongest", "typical", "features", "dense", "dropout",
                 "planet_probability"):
        assert name in names, name
    assert model.get_layer("pool3").output.shape[1:] == (49, 64)  # 3197 / 4**3 steps for the LSTM
    assert model.get_layer("features").output.shape[-1] == 64 + 64 + 64
    assert model.output.shape[1:] == (1,)
    # The previous model (55,393) plus the dense layer's inputs from the two pools: 128 x 64.
    assert model.count_params() == 55_393 + 128 * 64


def test_a_deeper_normalised_front_end_is_a_setting():
    model = build_model(ModelConfig(convs_per_stage=2, kernel_size=5, batch_norm=True, global_pooling=True,
                                    spectrum_harmonics=0), sequence_length=3197)
    names = [layer.name for layer in model.layers]
    assert {"conv1_1", "conv1_1_norm", "conv1_2_relu", "conv3_2"} <= set(names)
    assert model.get_layer("conv1_1").use_bias is False  # the normalisation's shift replaces it
    assert model.count_params() == 86_097


def test_a_bidirectional_lstm_is_a_setting_left_out_of_older_fingerprints():
    model = build_model(ModelConfig(bidirectional=True, spectrum_harmonics=0), sequence_length=3197)
    assert model.get_layer("bidirectional_lstm").output.shape[1:] == (2 * 64,)  # both directions' last states
    # The previous model (55,393) plus the backward LSTM (33,024) and the dense layer's second 64 inputs.
    assert model.count_params() == 55_393 + 33_024 + 64 * 64
    # Off, it is not in the fingerprint, so a 1.5 checkpoint still resumes; on, it is.
    assert "bidirectional" not in ModelConfig().fingerprint()
    assert ModelConfig(bidirectional=True).fingerprint()["bidirectional"] is True


def test_default_model_has_the_documented_stack():
    model = build_model(ModelConfig(), sequence_length=3197)
    names = [layer.name for layer in model.layers]
    # The two paths from the input, in order (Keras lists their layers interleaved), then the head.
    path = ["light_curve", "conv1", "pool1", "conv2", "pool2", "conv3", "pool3", "lstm"]
    branch = ["light_curve", "harmonic_power", "harmonic_profile", "harmonic_mix", "strongest_period"]
    assert [name for name in names if name in path] == path and [name for name in names if name in branch] == branch
    assert names[-4:] == ["with_spectrum", "dense", "dropout", "planet_probability"] and len(names) == 16
    assert model.get_layer("pool3").output.shape[1:] == (49, 64)
    assert model.get_layer("harmonic_power").output.shape[1:] == (1319, 12)
    # 1.11's network (55,393 weights with one channel), the branch's two convolutions (208 and
    # 272 weights) and the dense layer's 16 more inputs.
    assert model.count_params() == 55_393 + (12 * 16 + 16) + (16 * 16 + 16) + 16 * 64
    # With the fold: the power at 12 harmonics, then the deepest dip and highest peak over the
    # first 3, 6 and 12, so the first convolution has 6 x 16 more weights.
    folded = build_model(ModelConfig(spectrum_coherent=True), sequence_length=3197)
    assert folded.get_layer("harmonic_power").output.shape[1:] == (1319, 12 + 2 * 3)
    assert folded.count_params() == model.count_params() + 6 * 16
    assert not any("norm" in layer.name for layer in model.layers)
    # 1.11's network, as {"model": {"spectrum_harmonics": 0}} builds it.
    without = build_model(ModelConfig(spectrum_harmonics=0), sequence_length=3197)
    assert [layer.name for layer in without.layers] == [
        "light_curve", "conv1", "pool1", "conv2", "pool2", "conv3", "pool3", "lstm", "dense", "dropout",
        "planet_probability"]
    assert without.count_params() == 55_393


def test_settings_that_cannot_build_are_refused_with_the_value():
    with pytest.raises(ValueError, match="convs_per_stage must be a positive integer, got 0"):
        ModelConfig(convs_per_stage=0)
    with pytest.raises(ValueError, match="leave nothing of 60 cadences"):
        build_model(ModelConfig(), sequence_length=60)  # 60 -> 15 -> 3 -> 0
    # The spectrum branch needs two of its shortest trial period, 0.5 days (24.5 cadences), in a window.
    with pytest.raises(ValueError, match="a window of 48 cadences holds no trial period twice"):
        build_model(ModelConfig(conv_filters=(4,)), sequence_length=48)
    build_model(ModelConfig(conv_filters=(4,)), sequence_length=50)
    build_model(ModelConfig(conv_filters=(4,), spectrum_harmonics=0), sequence_length=48)


def test_weight_averaging_is_saved_with_the_model_and_used_to_predict(tmp_path):
    import keras
    import numpy as np

    from evaluation import load_model_file

    model = build_model(ModelConfig(conv_filters=(4,), lstm_units=4, dense_units=4, ema_momentum=0.9,
                                    spectrum_harmonics=0), 32)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 32, 1)).astype("float32"), rng.integers(0, 2, (64, 1)).astype("float32")
    # Saved at the end of the epoch, as the checkpoint callback saves: training weights, averages in the optimizer.
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: model.save(tmp_path / "m.keras"))])
    raw = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    used = load_model_file(tmp_path / "m.keras")
    averages = raw.optimizer._model_variables_moving_average
    assert len(averages) == len(used.trainable_variables) > 4
    for variable, average, trained in zip(used.trainable_variables, averages, raw.trainable_variables):
        np.testing.assert_array_equal(variable.numpy(), average.numpy())   # predicts with the averages
        assert not np.array_equal(trained.numpy(), average.numpy())         # which are not the trained weights
    assert ModelConfig().ema_momentum == 0.999
    with pytest.raises(ValueError, match="ema_momentum must be in"):
        ModelConfig(ema_momentum=1.0)


def test_the_optimizer_is_built_with_the_model_so_the_first_step_is_traced_once():
    import numpy as np

    from model import compile_model

    def traces_of_a_first_fit(model) -> int:
        traced = []
        train_step = model.train_step

        def counted(data):  # Python in a tf.function runs only when it is traced
            traced.append(1)
            return train_step(data)

        model.train_step = counted
        rng = np.random.default_rng(0)
        model.fit(rng.normal(size=(16, 32, 1)).astype("float32"), rng.integers(0, 2, (16, 1)).astype("float32"),
                  batch_size=8, epochs=1, verbose=0, shuffle=False)
        return len(traced)

    config = ModelConfig(conv_filters=(4,), lstm_units=4, dense_units=4, spectrum_harmonics=0)
    model = build_model(config, 32)
    slots = len(model.optimizer.variables)
    assert model.optimizer.built and slots > 2 * len(model.trainable_variables)
    assert traces_of_a_first_fit(model) == 1 and len(model.optimizer.variables) == slots
    # Built in the first step instead (a fresh, unbuilt Adam), TensorFlow traces it twice.
    lazy = build_model(config, 32)
    compile_model(lazy, config)
    assert not lazy.optimizer.built and traces_of_a_first_fit(lazy) == 2


def test_the_spectrum_branch_is_a_setting_left_out_of_older_fingerprints():
    model = build_model(ModelConfig(spectrum_harmonics=24), sequence_length=3197, channels=2)
    # 1319 trial periods (0.5-32 days of long cadences, a quarter of a frequency bin apart) x 24 harmonics.
    assert model.get_layer("harmonic_power").output.shape[1:] == (1319, 24)
    assert model.get_layer("with_spectrum").output.shape[-1] == 64 + 16
    # The network without the branch (55,505 weights with two channels), the branch's two
    # convolutions over the harmonics (400 and 272 weights) and the dense layer's 16 more inputs.
    assert model.count_params() == 55_505 + (24 * 16 + 16) + (16 * 16 + 16) + 16 * 64
    assert "spectrum_harmonics" not in ModelConfig(spectrum_harmonics=0).fingerprint()
    assert ModelConfig(spectrum_harmonics=24).fingerprint()["spectrum_harmonics"] == 24
    # The fold (an option since 1.13.1) likewise: off, or without a branch to fold in, it is
    # left out, so every earlier checkpoint keeps its fingerprint.
    assert "spectrum_coherent" not in ModelConfig().fingerprint()
    assert ModelConfig(spectrum_coherent=True).fingerprint()["spectrum_coherent"] is True
    assert "spectrum_coherent" not in ModelConfig(spectrum_harmonics=0, spectrum_coherent=True).fingerprint()
    with pytest.raises(ValueError, match="spectrum_harmonics must be 0"):
        ModelConfig(spectrum_harmonics=-1)


def _spectrum_and_local_mean_power(flux):
    """numpy's spectrum of one curve as the layer takes it (mean removed, zero-padded to
    ``fft_length``), and the mean power of the ``WHITEN_BINS`` bins either side of each bin
    (the ends reflected), written out bin by bin."""
    import numpy as np

    from spectrum import WHITEN_BINS, fft_length

    amplitudes = np.fft.rfft(flux - flux.mean(), n=fft_length(len(flux)))
    padded = np.pad(np.abs(amplitudes) ** 2, WHITEN_BINS, mode="reflect")
    local = np.array([padded[i + 1:i + 2 * WHITEN_BINS + 1].mean() for i in range(len(amplitudes))])
    return amplitudes, local


def test_the_harmonic_power_is_the_whitened_spectrum_read_at_each_trial_periods_harmonics():
    import numpy as np

    from spectrum import CAP, harmonic_index, harmonic_power_layer

    # The layer against the same computation written out in numpy, one curve at a time.
    rng = np.random.default_rng(5)
    curves = rng.standard_normal((3, 300, 2)).astype("float32")
    curves[0, ::25, 0] -= 4.0     # a train of one-cadence dips, 25 cadences apart
    curves[1, :, 0] += 20.0 * np.sin(2 * np.pi * np.arange(300) / 30)  # a strong sine: capped
    index, inside = harmonic_index(300, 5)
    expected = []
    for flux in curves[:, :, 0].astype("float64"):
        amplitudes, local = _spectrum_and_local_mean_power(flux)
        white = np.abs(amplitudes) ** 2 / (local + 1e-6)
        highest = np.maximum(white, np.maximum(np.roll(white, 1), np.roll(white, -1)))
        expected.append(np.minimum(highest[index] * inside, CAP))
    computed = np.asarray(harmonic_power_layer()(5, 300)(curves))
    assert computed.shape == (3,) + index.shape
    np.testing.assert_allclose(computed, np.array(expected), rtol=2e-3, atol=2e-3)
    assert computed[1].max() == CAP and computed[0].max() < CAP


def test_the_fold_is_the_curve_folded_at_each_trial_period_and_smoothed_to_its_harmonics():
    import numpy as np

    import spectrum
    from spectrum import CAP, COHERENT_PHASES, coherent_groups, fft_length, harmonic_index, harmonic_power_layer

    # The layer against the fold written out in numpy: each harmonic's whitened amplitude, turned
    # to the times one period apart from the middle of the window, summed over the first 3 and 5.
    rng = np.random.default_rng(8)
    curves = rng.standard_normal((3, 300, 1)).astype("float32")
    curves[0, ::25, 0] -= 3.0
    curves[2, :, 0] += 3.0 * np.sin(2 * np.pi * np.arange(300) / 40)
    index, inside = harmonic_index(300, 5)
    length = fft_length(300)
    fundamentals = spectrum._fundamentals(300)
    times = 149.5 + np.arange(COHERENT_PHASES)[None, :] / COHERENT_PHASES * (length / fundamentals)[:, None]
    turn = np.exp(2j * np.pi * fundamentals[:, None, None] * np.arange(1, 6)[None, :, None] * times[:, None, :] / length)
    expected = []
    for flux in curves[:, :, 0].astype("float64"):
        amplitudes, local = _spectrum_and_local_mean_power(flux)
        amplitude = amplitudes[index] / np.sqrt(local[index] + 1e-6) * inside
        profile = np.real(amplitude[:, :, None] * turn)            # [periods, harmonics, phases]
        dips, peaks = [], []
        for count in coherent_groups(5):
            summed = profile[:, :count].sum(axis=1) / np.sqrt(np.maximum(inside[:, :count].sum(axis=1), 1) / 2)[:, None]
            dips.append(-summed.min(axis=1))
            peaks.append(summed.max(axis=1))
        expected.append(np.minimum(np.stack(dips + peaks, axis=1), CAP))
    computed = np.asarray(harmonic_power_layer()(5, 300, coherent=True)(curves))
    assert coherent_groups(5) == (3, 5) and computed.shape == (3, len(index), 5 + 4)
    np.testing.assert_allclose(computed[:, :, 5:], np.array(expected), rtol=2e-3, atol=2e-3)


def test_the_fold_adds_up_shallow_dips_and_tells_them_from_a_sine_and_from_noise():
    import numpy as np

    import spectrum
    from spectrum import fft_length, harmonic_power_layer

    cadence = np.arange(3197)
    rng = np.random.default_rng(4)
    noise = rng.standard_normal((4, 3197)).astype("float32")
    # 40 dips of 3 cadences every 80, each 1.2 sigma deep (S/N about 13 in all, 2 a dip); the
    # same shifted and reversed; a sine of 80 cadences; noise alone.
    train = (cadence % 80 < 3).astype("float32")
    sine = np.sin(2 * np.pi * cadence / 80).astype("float32")
    curves = np.stack([noise[0] - 1.2 * train, np.roll(noise[1] - 1.2 * train, 1000)[::-1],
                       noise[2] + 0.5 * sine, noise[3]])[..., None]
    features = np.asarray(harmonic_power_layer()(12, 3197, coherent=True)(curves))
    # [power at 12 harmonics | dips over the first 3, 6, 12 | peaks over the same]
    dip, peak = features[:, :, 12 + 2], features[:, :, 12 + 5]
    period = np.argmin(np.abs(fft_length(3197) / spectrum._fundamentals(3197) - 80))
    near = slice(period - 3, period + 4)
    for row in (0, 1):
        assert dip[row, near].max() > 5.5                           # the dips add up...
        assert dip[row, near].max() > 1.6 * peak[row, near].max()   # ...to a dip, not a wave
        assert dip[row, near].max() > 1.3 * dip[3].max()            # above the noise's deepest anywhere
    sine_dip, sine_peak = features[2, near, 12].max(), features[2, near, 15].max()  # over 3 harmonics
    assert sine_peak > 1.3 * dip[3].max() and abs(sine_dip - sine_peak) < 0.2 * sine_peak


def test_the_harmonic_power_peaks_at_a_dip_trains_period_wherever_its_dips_are(tmp_path):
    import numpy as np

    from evaluation import load_model_file
    from spectrum import harmonic_index, harmonic_power_layer

    layer = harmonic_power_layer()(16, 3197)
    index, _ = harmonic_index(3197, 16)
    cadence = np.arange(3197)
    rng = np.random.default_rng(2)
    noise = rng.standard_normal((3, 3197)).astype("float32")
    # Dips of 3 cadences every 80 cadences (S/N about 15 in all), in unit noise; then the same
    # curve shifted and reversed, as the training's random views read it.
    train = (cadence % 80 < 3).astype("float32")
    curves = np.stack([noise[0] - 1.4 * train, np.roll(noise[0] - 1.4 * train, 1000)[::-1], noise[1]])[..., None]
    summed = np.asarray(layer(curves)).sum(axis=2)
    expected = np.argmin(np.abs(index[:, 0] - 8192 / 80))  # the fundamental's bin: 8192 / 80 cadences
    for row in (0, 1):
        assert abs(int(np.argmax(summed[row])) - expected) <= 4
        assert summed[row].max() > 1.5 * summed[2].max()  # far above the noise-only curve's highest
    # Saved and loaded by name with safe_mode, it computes the same (no weight averaging: untrained,
    # the averages are not the weights).
    model = build_model(ModelConfig(conv_filters=(4,), lstm_units=4, dense_units=4, spectrum_harmonics=4,
                                    spectrum_coherent=True, ema_momentum=0), 3197)
    model.save(tmp_path / "m.keras")
    loaded = load_model_file(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded.predict_on_batch(curves), model.predict_on_batch(curves), rtol=1e-6)
    assert loaded.get_layer("harmonic_power").coherent is True
    # A model saved before the fold was an option has no such setting: it loads without it.
    layer = harmonic_power_layer().from_config({"harmonics": 4, "sequence_length": 3197, "name": "harmonic_power"})
    assert layer.coherent is False and layer.compute_output_shape((None, 3197, 1)) == (None, len(index), 4)
