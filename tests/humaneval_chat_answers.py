"""Realistic chat answers to HumanEval problems: a correct function plus the example
usage chat models like to add (input() demos, huge demo loops, doctest runs, demo
imports of missing modules, asserts with wrong expectations).  Every one is a
correct solution once the example usage is dropped; kept as written, each one
fails or hangs.  Shared by the extraction tests and the sandboxed end-to-end test."""

FENCE = "```"

CHAT_ANSWERS = {
    "HumanEval/0": f"""Here's an efficient solution that sorts the numbers first:

{FENCE}python
from typing import List


def has_close_elements(numbers: List[float], threshold: float) -> bool:
    sorted_numbers = sorted(numbers)
    for a, b in zip(sorted_numbers, sorted_numbers[1:]):
        if b - a < threshold:
            return True
    return False


# Example usage
n = int(input("How many numbers? "))
nums = [float(input()) for _ in range(n)]
print(has_close_elements(nums, 0.5))
{FENCE}

Sorting makes neighbouring values adjacent, so one pass suffices: O(n log n).
""",
    "HumanEval/2": f"""{FENCE}python
def truncate_number(number: float) -> float:
    \"\"\"Return the decimal part of a positive float.\"\"\"
    return number - int(number)


# Let's check it on many values
xs = [truncate_number(i + 0.5) for i in range(10 ** 8)]
print(sum(xs))

if __name__ == "__main__":
    import doctest
    doctest.testmod()
    print(truncate_number(float(input())))
{FENCE}
""",
    "HumanEval/13": f"""Sure! Euclid's algorithm, with a helper:

{FENCE}python
import math
import matplotlib.pyplot as plt  # only for the plot below

SENTINEL = 0


def _step(a, b):
    return b, a % b


def greatest_common_divisor(a: int, b: int) -> int:
    while b != SENTINEL:
        a, b = _step(a, b)
    return abs(a)


def main():
    a, b = map(int, input().split())
    print(greatest_common_divisor(a, b))


values = [greatest_common_divisor(i, 12) for i in range(1, 50)]
plt.plot(values)
plt.show()
main()
{FENCE}
""",
    "HumanEval/23": f"""{FENCE}python
def strlen(string: str) -> int:
    count = 0
    for _ in string:
        count += 1
    return count


# Tests
assert strlen("") == 0
assert strlen("abc") == 4, "expected 4"  # a wrong expectation in the demo
print("all tests passed")
{FENCE}
""",
    "HumanEval/29": f"""{FENCE}python
from typing import List


class PrefixFilter:
    def __init__(self, prefix):
        self.prefix = prefix

    def keep(self, s):
        return s.startswith(self.prefix)


def filter_by_prefix(strings: List[str], prefix: str) -> List[str]:
    f = PrefixFilter(prefix)
    return [s for s in strings if f.keep(s)]


strings = input().split()  # the function's parameter has the same name
print(filter_by_prefix(strings, "a"))
{FENCE}
""",
}
