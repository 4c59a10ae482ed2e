"""Each flow's plain logic, one folder per flow, plus what every flow shares."""
