import sys; print("{}")
