"""Inverse problems `y = A x̄ + ε` (`problem`) and matrix-free imaging operators (`imaging`,
`operators`, `blur`)."""
