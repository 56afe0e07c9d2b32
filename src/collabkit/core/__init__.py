"""collabkit.core: the training engine below the models (one-cycle loop, row-sparse AdamW, schedule,
negative sampling) and the History every ``fit`` returns."""
