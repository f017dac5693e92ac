select
    order_date,
    count(*) as orders,
    count(*) filter (where is_revenue) as revenue_orders,
    count(*) filter (where status = 'cancelled') as cancelled_orders,
    count(*) filter (where status = 'returned') as returned_orders,
    coalesce(sum(amount) filter (where is_revenue), 0)::numeric(14, 2) as revenue,
    coalesce(sum(paid_amount), 0)::numeric(14, 2) as paid_amount
from {{ ref('fct_orders') }}
group by order_date
