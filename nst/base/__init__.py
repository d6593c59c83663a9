"""The ground floor: every setting and its default (`config`, `presets`), how
a value is checked (`checks`), VGG19's layer geometry (`geometry`), where files
are kept (`cache`) and TensorFlow itself (`backend`). Imports nothing above."""
