"""encoder-sweep: fine-tune encoders on sentiment classification over a Hydra grid and compare them."""
