"""The hostile-input suite (spec/model.md "Hostile-input suite"): generated bad inputs, each run in a forked,
memory- and time-limited child."""
