"""Your own judged task: answers to your prompts, graded by an LLM judge on a rubric."""

from pathlib import Path

from evalsuite.judging import Criterion
from evalsuite.judging.builder import rubric_task
from evalsuite.task import Task, TaskContext, task
from evalsuite.templates import task_templates

CRITERIA = [
    Criterion("helpfulness", low=1, high=5, description="Does the response do what the user asked?"),
    Criterion("accuracy", low=1, high=5, description="Is every statement in it correct?"),
    Criterion("concision", low=1, high=5, description="Is it free of padding and repetition?"),
]
EXAMPLE_PROMPTS = str(Path(__file__).with_name("prompts.jsonl"))


@task("Helpfulness rubric: three criteria graded 1-5 by the judge, over a JSONL of prompts (-T data=FILE)",
      judged=True)
def helpfulness_rubric(ctx: TaskContext, data: str = EXAMPLE_PROMPTS, max_new_tokens: int = 512) -> Task:
    return rubric_task(ctx, "helpfulness_rubric", data, CRITERIA, task_templates(__file__),
                       max_new_tokens=max_new_tokens)
