"""The collector audit: another collector's records compared with the emulator's ground truth."""
