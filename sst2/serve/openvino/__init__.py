"""The OpenVINO artifact: the tokenizer and the model as one OpenVINO model, quantized,
measured against the SavedModel and exported beside it."""
