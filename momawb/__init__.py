"""momawb: a workbench for offline multi-agent RL coordination (MOMA-PPO, AAMAS 2024)."""
__version__ = "0.1.0"
