"""The teacher stage: OpenAI-compatible client, offline teacher, journal, budget, KD builder.

- `jz3.teacher.kd.run_kd(teacher_cfg, snippets_path, out_dir, ids) -> KDResult` (the kd_seed /
  kd_boost stage body) over `build_kd(teacher_cfg, snippets_path, out_dir, limit=, ids=) -> KDStats`
- `jz3.teacher.dispatch.TeacherRunner`: journal-first, budgeted, concurrent, retried requests
- `jz3.teacher.journal.Journal` (SQLite WAL), `jz3.teacher.budget.Budget`
- backends: `jz3.teacher.openai_client.OpenAIBackend`, `jz3.teacher.offline.OfflineTeacher`
"""
