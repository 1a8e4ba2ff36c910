"""LessonGate: a school's social media policy, enforced on the school's own gateway."""

__version__ = "0.1.0"
