//! Reconciliation: polling linked tickets. (Filled in by the two-way sync work.)
