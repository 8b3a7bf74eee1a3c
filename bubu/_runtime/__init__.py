"""The runtime contract: pure data turned from the environment into typed, frozen structs."""
