// Host of the tests' precompiled header (pch.hpp); it has no code of its own.
