"""Data layer: load records, build tasks, format prompts, and stream resumable batches."""
from rlpost.data.dataset import PromptDataset
from rlpost.data.errors import DataError
from rlpost.data.loaders import load_records, require_columns
from rlpost.data.paths import SHARED_DATA_ENV, shared_data_dir, shared_data_path
from rlpost.data.prompts import format_prompt, render_template, template_columns
from rlpost.data.tasks import TASKS, load_task

__all__ = [
    "DataError",
    "PromptDataset",
    "SHARED_DATA_ENV",
    "TASKS",
    "format_prompt",
    "load_records",
    "load_task",
    "render_template",
    "require_columns",
    "shared_data_dir",
    "shared_data_path",
    "template_columns",
]
