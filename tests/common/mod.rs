//! Test data shared by the integration tests of reports and suites.

/// A tiny synthetic BP scenario: 6-12-3 ReLU, 240 training samples, three
/// epochs — a run takes milliseconds.
pub const TINY: &str = r#"
name = "tiny"
seed = 1

[network]
layers = [6, 12, 3]
activation = "relu"
output = "softmax_ce"

[data.synthetic]
n_train = 240
n_test = 120
n_features = 6
n_classes = 3

[training]
epochs = 3
batch_size = 24
learning_rate = 0.1
"#;
